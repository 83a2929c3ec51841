// The Ethereum client suite (lib/eth-suite.mjs) against ganache with --server.wsBinary true (binary reply frames).
import { ethSuite } from "./lib/eth-suite.mjs";

ethSuite("ganache-binary");
