package auth

// SetCompare replaces the bcrypt comparison, so tests can count the
// comparisons made.
func SetCompare(a *Authorizer, f func(hash, pw []byte) error) { a.compare = f }

// HashPasswordCost is HashPassword at a cost of the test's choosing.
func HashPasswordCost(pw string, cost int) (string, error) { return hashPassword(pw, cost) }

// SetPasswordCost is SetPassword at a cost of the test's choosing.
func SetPasswordCost(path, user, pw string, cost int) error {
	return setPassword(path, user, pw, cost)
}

// WithTableSize sets how many keys each limit table holds, so that tests
// can fill one.
func WithTableSize(n int) Option { return func(a *Authorizer) { a.tableSize = n } }
