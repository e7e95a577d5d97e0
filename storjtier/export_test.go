package storjtier

// The seam under the Storj backend, for the fake project of the tests.
type (
	StorjProject = storjProject
	StorjUpload  = storjUpload
)

// NewStorjOn returns the Storj backend on project p.
func NewStorjOn(p StorjProject, cfg StorjConfig) *Storj { return newStorj(p, cfg) }

// EncryptedKeyLen bounds the length of key once uplink has encrypted it.
var EncryptedKeyLen = encryptedKeyLen
