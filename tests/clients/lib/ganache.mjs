// In-process ganache node on loopback: deterministic wallet, instamine, fixed chain id.
import ganache from "ganache";

export const CHAIN_ID = 1337;

// ganache's `wallet.deterministic` mnemonic is
// "myth like bonus scare over problem client lizard pioneer submit female collect";
// these are its first two accounts.
export const ACCOUNTS = [
  {
    address: "0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1",
    privateKey: "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d",
  },
  {
    address: "0xFFcf8FDEE72ac11b5c542428B35EEF5769C409f0",
    privateKey: "0x6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1",
  },
];

export async function startGanache() {
  const server = ganache.server({
    logging: { quiet: true },
    wallet: { deterministic: true, totalAccounts: 4 },
    // networkId defaults to Date.now() in ganache; pin it so net_version is stable.
    chain: { chainId: CHAIN_ID, networkId: CHAIN_ID },
    miner: { instamine: "eager" },
  });
  await server.listen(0, "127.0.0.1");
  const { port } = server.address();
  if (!port) throw new Error("ganache did not report a listening port");
  let closed = false;
  return {
    server,
    port,
    // ganache serves WebSocket (only on path "/") and HTTP POST on the same port.
    wsUrl: `ws://127.0.0.1:${port}`,
    httpUrl: `http://127.0.0.1:${port}`,
    async close() {
      if (closed) return;
      closed = true;
      await server.close();
    },
  };
}
