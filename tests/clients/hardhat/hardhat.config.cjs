// Hardhat 2 config for `hardhat node` in the client suites (tests/clients/lib/nodes.mjs):
// the built-in network with chain id 1337 and the accounts of ganache's deterministic
// mnemonic, so every node in the suites has the same chain id and funded accounts.
// No sources: `hardhat node` compiles nothing and downloads no compiler.
module.exports = {
  networks: {
    hardhat: {
      chainId: 1337,
      accounts: {
        mnemonic: "myth like bonus scare over problem client lizard pioneer submit female collect",
        count: 4,
      },
    },
  },
};
