package upstream

import "strings"

// parseChallenge reads WWW-Authenticate values and returns the Bearer
// challenge if there is one, else the Basic one, else the first; with its
// parameters (names lowercased).
func parseChallenge(values []string) (scheme string, params map[string]string) {
	type challenge struct {
		scheme string
		params map[string]string
	}
	var all []challenge
	for _, v := range values {
		for v = strings.TrimSpace(v); v != ""; v = strings.TrimSpace(v) {
			s, rest, _ := strings.Cut(v, " ")
			ch := challenge{scheme: s, params: map[string]string{}}
			v = parseParams(strings.TrimSpace(rest), ch.params)
			all = append(all, ch)
		}
	}
	for _, want := range []string{"bearer", "basic"} {
		for _, ch := range all {
			if strings.EqualFold(ch.scheme, want) {
				return ch.scheme, ch.params
			}
		}
	}
	if len(all) > 0 {
		return all[0].scheme, all[0].params
	}
	return "", nil
}

// parseParams reads `name=value` or `name="quoted value"` pairs separated by
// commas into params and returns what follows them (the next challenge).
func parseParams(s string, params map[string]string) string {
	for {
		s = strings.TrimLeft(s, ", ")
		eq := strings.IndexByte(s, '=')
		sp := strings.IndexAny(s, " ,")
		if eq <= 0 || (sp >= 0 && sp < eq) {
			return s // not a parameter: the start of another challenge
		}
		key := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			val, s = b.String(), s[min(i+1, len(s)):]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			val, s = strings.TrimSpace(s[:end]), s[end:]
		}
		params[key] = val
	}
}
