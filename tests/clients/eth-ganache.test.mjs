// The Ethereum client suite (lib/eth-suite.mjs) against ganache 7.9.2 in its default frame mode (text).
import { ethSuite } from "./lib/eth-suite.mjs";

ethSuite("ganache");
