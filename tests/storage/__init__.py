"""Storage backends and persisted stores: the contract, SQLite, durability and crash recovery."""
