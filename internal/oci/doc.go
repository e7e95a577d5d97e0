// Package oci is the vocabulary shared by every layer of the node, below
// all of them: the sentinel errors that each tier wraps (localtier,
// storjtier, upstream, the engine) and the HTTP boundary maps once; the
// tag record and the manifest size limit every tier agrees on; and the one
// reader that checks content against its digest, with its tail held back.
// A caller asks errors.Is(err, oci.ErrNotFound), whichever tier answered.
package oci
