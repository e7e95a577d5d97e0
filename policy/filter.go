package policy

import (
	"fmt"
	"path"
	"strings"
)

// A route's allow and deny lists choose what it serves by repository and
// tag. A pattern is a repository glob, optionally followed by ':' and a tag
// glob ("library/*", "team/app:v*", "*/*:latest"); globs are path.Match's:
// '*' stands for any run of characters but '/', '?' for one, [...] for a
// class. A repository glob covers the repositories it matches and every
// repository under them: "team/*" covers team/app and team/app/sub. A
// pattern with a tag judges only requests that name a tag (a manifest by
// tag); the others are judged by repository patterns alone. Patterns are
// matched against the name at the origin: on a default route to Docker Hub,
// "library/alpine" for "alpine".

// compilePatterns checks the patterns of a list of route rt, and refuses
// those that could never match: repository names are lower case, and are
// those at the origin, without the route's name before them.
func compilePatterns(rt *Route, list string, patterns []string) error {
	for _, p := range patterns {
		repo, tag, hasTag := strings.Cut(p, ":")
		if repo == "" || (hasTag && (tag == "" || strings.Contains(tag, ":"))) {
			return fmt.Errorf("%s pattern %q: want a repository glob, optionally with ':' and a tag glob", list, p)
		}
		if strings.ToLower(repo) != repo {
			return fmt.Errorf("%s pattern %q: repository names are lower case; it would never match", list, p)
		}
		// A route named after its registry's host (docker.io, ghcr.io)
		// never has that name at the start of a repository there.
		if !rt.Hosted && strings.ContainsAny(rt.Name, ".:") && strings.HasPrefix(repo, rt.Name+"/") {
			return fmt.Errorf("%s pattern %q: patterns name repositories as the origin does, without the route's name %q; it would never match", list, p, rt.Name)
		}
		for _, g := range []string{repo, tag} {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("%s pattern %q: %w", list, p, err)
			}
		}
	}
	return nil
}

// matches reports whether pattern p takes repo, and tag when p has a tag
// part: a tag pattern never matches a request without a tag.
func matches(p, repo, tag string) bool {
	rp, tp, hasTag := strings.Cut(p, ":")
	if !coversRepo(rp, repo) {
		return false
	}
	if !hasTag {
		return true
	}
	if tag == "" {
		return false
	}
	ok, _ := path.Match(tp, tag)
	return ok
}

// Permits reports whether the route serves repo, and tag when the request
// names one: no deny pattern matches, and, when the route has an allow
// list, an allow pattern does (by its repository part alone for a request
// without a tag, so that the blobs and manifests of an allowed tag can be
// pulled).
func (r *Route) Permits(repo, tag string) bool {
	for _, p := range r.Deny {
		if matches(p, repo, tag) {
			return false
		}
	}
	if len(r.Allow) == 0 {
		return true
	}
	for _, p := range r.Allow {
		rp, _, hasTag := strings.Cut(p, ":")
		if matches(p, repo, tag) || (tag == "" && hasTag && matches(rp, repo, "")) {
			return true
		}
	}
	return false
}

// coversRepo reports whether glob g matches repo or a repository that repo
// is under (a leading run of its path elements).
func coversRepo(g, repo string) bool {
	for i := len(repo); i > 0; i = strings.LastIndexByte(repo[:i], '/') {
		if ok, _ := path.Match(g, repo[:i]); ok {
			return true
		}
	}
	return false
}
