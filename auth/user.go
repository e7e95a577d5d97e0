package auth

// HasUser reports whether name is the user name of one of the node's
// users. It checks no password, so it is no password oracle: a route that
// forwards its clients' credentials to its origin asks this to refuse any
// credentials under a node user's name, whatever their password, so that a
// node user's password is never sent to the origin, and a right password
// is told from a wrong one by nothing (no hash, no round trip to the
// origin). The caller bounds how often it asks: the answer tells a node
// user's name from others.
func (a *Authorizer) HasUser(name string) bool {
	if name == "" {
		return false
	}
	_, known := a.file.users(a.now()).hashes[name]
	return known
}
