package auth

// Owns reports whether user and password are the credentials of one of
// the node's users. Unlike a login it counts nothing: a mismatch is not a
// failed login (the credentials may well be another party's, as on a route
// that forwards its clients' credentials to its origin, which asks this to
// keep the node's users' passwords from being sent there), and a match
// trusts no address. The caller bounds how often it asks. A match is
// cached as a login's is; a name that is no user costs no hash.
func (a *Authorizer) Owns(user, password string) bool {
	if user == "" {
		return false
	}
	now := a.now()
	users := a.file.users(now)
	hash, known := users.hashes[user]
	if !known {
		return false
	}
	ck := a.cacheKey(user, password)
	if a.cached(ck, user, now) {
		return true
	}
	if a.compare(hash, []byte(password)) != nil {
		return false
	}
	a.verified.Add(ck, verification{user: user, gen: users.gen, expires: now.Add(a.cacheTTL)})
	return true
}
