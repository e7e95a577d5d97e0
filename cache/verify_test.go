package cache

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"
)

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyReaderPassesGoodContent(t *testing.T) {
	t.Parallel()
	data := randomBytes(t, 300<<10)
	for _, size := range []int64{int64(len(data)), -1} {
		v := &verifyReader{src: iotest.HalfReader(bytes.NewReader(data)), d: digest.FromBytes(data), h: digest.SHA256.Hash(), size: size}
		got, err := io.ReadAll(v)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: %d bytes, err %v", size, len(got), err)
		}
	}
}

func TestVerifyReaderHoldsBackTheEnd(t *testing.T) {
	t.Parallel()
	data := randomBytes(t, 200<<10)
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 0xff
	tests := map[string]struct {
		content []byte
		size    int64
		want    error
	}{
		"wrong digest":   {bad, int64(len(bad)), ErrDigestMismatch},
		"short":          {data[:len(data)-10], int64(len(data)), ErrSizeMismatch},
		"long":           {append(bytes.Clone(data), 1), int64(len(data)), ErrSizeMismatch},
		"unknown length": {bad, -1, ErrDigestMismatch},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v := &verifyReader{src: bytes.NewReader(tt.content), d: digest.FromBytes(data), h: digest.SHA256.Hash(), size: tt.size}
			got, err := io.ReadAll(v)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if len(got) > len(data)-holdBack {
				t.Fatalf("returned %d bytes before the check failed; at most %d may go out", len(got), len(data)-holdBack)
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Digest != digest.FromBytes(data) {
				t.Fatalf("err %v is not a VerifyError for the digest", err)
			}
		})
	}
}

func TestReferences(t *testing.T) {
	t.Parallel()
	a, b, c, s := digest.FromString("a"), digest.FromString("b"), digest.FromString("c"), digest.FromString("s")
	foreign := digest.FromString("foreign")
	manifest := `{"schemaVersion":2,"config":{"digest":"` + a.String() + `"},"layers":[{"digest":"` + b.String() +
		`"},{"digest":"bogus"},{"digest":"` + foreign.String() + `","urls":["https://example.com/l"]}],` +
		`"subject":{"digest":"` + s.String() + `"},"blobs":[{"digest":"` + s.String() + `"}]}`
	got := References([]byte(manifest))
	if len(got) != 2 || got[0] != b || got[1] != a {
		t.Fatalf("manifest references = %v; the subject, blobs and foreign layers must not be linked", got)
	}
	index := `{"manifests":[{"digest":"` + c.String() + `"}]}`
	if got := References([]byte(index)); len(got) != 1 || got[0] != c {
		t.Fatalf("index references = %v", got)
	}
	if got := References([]byte("not json")); got != nil {
		t.Fatalf("garbage references = %v", got)
	}
}

func TestPage(t *testing.T) {
	t.Parallel()
	tags := []string{"a", "b", "c", "d"}
	tests := []struct {
		n    int
		last string
		want string
	}{
		{0, "", "abcd"}, {2, "", "ab"}, {2, "b", "cd"}, {10, "bb", "cd"}, {1, "d", ""},
	}
	for _, tt := range tests {
		got := ""
		for _, s := range page(tags, tt.n, tt.last) {
			got += s
		}
		if got != tt.want {
			t.Errorf("page(n=%d, last=%q) = %q, want %q", tt.n, tt.last, got, tt.want)
		}
	}
}
