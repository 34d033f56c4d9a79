package s2s

// Exported for the external tests.
var VerifyPeer = verifyPeer
