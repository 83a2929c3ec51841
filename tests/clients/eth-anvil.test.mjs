// The Ethereum client suite (lib/eth-suite.mjs) against anvil (npm @foundry-rs/anvil).
import { ethSuite } from "./lib/eth-suite.mjs";

ethSuite("anvil");
