package auth

// SCRAMKey is what the server keeps for one SCRAM hash: RFC 5802 §3 StoredKey
// and ServerKey. Neither the password nor the SaltedPassword is stored, so a
// leaked database cannot be replayed as a password against other services.
type SCRAMKey struct {
	Salt      []byte
	Iter      int
	StoredKey []byte
	ServerKey []byte
}

// Credentials holds one account's verifiers, one per supported hash.
type Credentials struct {
	SHA1   SCRAMKey
	SHA256 SCRAMKey
	SHA512 SCRAMKey
}
