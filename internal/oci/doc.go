// Package oci is the vocabulary shared by every layer of the node, below
// all of them: the sentinel errors that each tier wraps (localtier,
// storjtier, upstream, the engine) and the HTTP boundary maps once. A
// caller asks errors.Is(err, oci.ErrNotFound), whichever tier answered.
package oci
