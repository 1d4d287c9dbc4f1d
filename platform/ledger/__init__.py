"""Evidence ledger: an RFC 6962 Merkle log with multi-party signed tree heads (联盟链 model)."""
