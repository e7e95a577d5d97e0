//go:build !unix

package node

// oNoFollow makes an open fail on a symbolic link where the system can.
const oNoFollow = 0
