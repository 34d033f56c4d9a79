package router_test

import "gatehouse/xmpp/auth"

// authCreds returns fixed, valid-looking verifiers; these tests never log in.
func authCreds() auth.Credentials {
	k := auth.SCRAMKey{Salt: []byte("salt"), Iter: 4096, StoredKey: []byte("k"), ServerKey: []byte("s")}
	return auth.Credentials{SHA1: k, SHA256: k, SHA512: k}
}
