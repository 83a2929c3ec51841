// A hand-assembled contract (there is no solc here) that emits
//   event Ping(address indexed from, uint256 value)
// on every call, with `value` = the first 32-byte word of calldata.
import { ethers } from "ethers";

export const PING_SIGNATURE = "Ping(address,uint256)";
export const PING_TOPIC = ethers.id(PING_SIGNATURE);

export const PING_ABI_HUMAN = ["event Ping(address indexed from, uint256 value)"];
export const PING_ABI_JSON = [
  {
    type: "event",
    name: "Ping",
    anonymous: false,
    inputs: [
      { name: "from", type: "address", indexed: true },
      { name: "value", type: "uint256", indexed: false },
    ],
  },
];

function strip0x(h) {
  return h.startsWith("0x") ? h.slice(2) : h;
}

// Runtime code:
//   PUSH1 0x00  CALLDATALOAD      60 00 35   value = calldata[0:32]
//   PUSH1 0x00  MSTORE            60 00 52   mem[0:32] = value
//   CALLER                        33         topic1 = msg.sender
//   PUSH32 <Ping topic>           7f <32>    topic0
//   PUSH1 0x20                    60 20      size
//   PUSH1 0x00                    60 00      offset
//   LOG2                          a2         log(mem[0:32], topic0, topic1)
//   STOP                          00
export const RUNTIME_CODE = `0x600035600052337f${strip0x(PING_TOPIC)}60206000a200`;

const runtimeLen = strip0x(RUNTIME_CODE).length / 2; // 46 bytes
const hex1 = (n) => n.toString(16).padStart(2, "0");

// Constructor (11 bytes) that copies the runtime appended after it and returns it:
//   PUSH1 len  DUP1  PUSH1 0x0b  PUSH1 0x00  CODECOPY  PUSH1 0x00  RETURN
const CONSTRUCTOR = `60${hex1(runtimeLen)}80600b6000396000f3`;
if (CONSTRUCTOR.length / 2 !== 0x0b) throw new Error("constructor length mismatch");

export const INIT_CODE = `0x${CONSTRUCTOR}${strip0x(RUNTIME_CODE)}`;

/** Calldata for one ping: a single 32-byte big-endian word. */
export function pingData(value) {
  return ethers.zeroPadValue(ethers.toBeHex(value), 32);
}

/** Deploy with an ethers Wallet; returns the contract address. */
export async function deployPing(wallet) {
  const tx = await wallet.sendTransaction({ data: INIT_CODE, gasLimit: 200_000 });
  const receipt = await tx.wait(1, 10_000);
  if (!receipt || receipt.status !== 1 || !receipt.contractAddress) {
    throw new Error(`Ping deployment failed: ${JSON.stringify(receipt)}`);
  }
  return receipt.contractAddress;
}
