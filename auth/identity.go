package auth

// Identity is who made a request.
type Identity struct {
	// User is the authenticated user name; "" is an anonymous client.
	User string
}

// Anonymous reports whether the request carried no credentials.
func (id Identity) Anonymous() bool { return id.User == "" }
