// The Ethereum client suite (lib/eth-suite.mjs) against Hardhat 2's `hardhat node`.
import { ethSuite } from "./lib/eth-suite.mjs";

ethSuite("hardhat");
