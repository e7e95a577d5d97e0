package oci_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/internal/testkit"
)

func TestVerifierPassesGoodContent(t *testing.T) {
	t.Parallel()
	data := testkit.RandomBytes(t, 300<<10)
	for _, hold := range []int{0, 32 << 10} {
		for _, size := range []int64{int64(len(data)), -1} {
			v := oci.NewVerifier(iotest.HalfReader(bytes.NewReader(data)), digest.FromBytes(data), size, hold)
			got, err := io.ReadAll(v)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("hold %d, size %d: %d bytes, err %v", hold, size, len(got), err)
			}
		}
	}
}

// A mismatch gives a *VerifyError, and no more than the content less the
// held-back bytes went out before it.
func TestVerifierHoldsBackTheEnd(t *testing.T) {
	t.Parallel()
	data := testkit.RandomBytes(t, 200<<10)
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 0xff
	tests := map[string]struct {
		content []byte
		size    int64
		want    error
	}{
		"wrong digest":   {bad, int64(len(bad)), oci.ErrDigestMismatch},
		"short":          {data[:len(data)-10], int64(len(data)), oci.ErrSizeMismatch},
		"long":           {append(bytes.Clone(data), 1), int64(len(data)), oci.ErrSizeMismatch},
		"unknown length": {bad, -1, oci.ErrDigestMismatch},
	}
	for name, tt := range tests {
		for _, hold := range []int{0, 32 << 10} {
			got, err := io.ReadAll(oci.NewVerifier(bytes.NewReader(tt.content), digest.FromBytes(data), tt.size, hold))
			if !errors.Is(err, tt.want) || !oci.IsVerifyError(err) {
				t.Fatalf("%s, hold %d: err = %v, want %v", name, hold, err, tt.want)
			}
			if len(got) > len(data)-hold {
				t.Fatalf("%s: returned %d bytes before the check failed; at most %d may go out", name, len(got), len(data)-hold)
			}
			var ve *oci.VerifyError
			if !errors.As(err, &ve) || ve.Digest != digest.FromBytes(data) {
				t.Fatalf("%s: err %v is not a VerifyError for the digest", name, err)
			}
		}
	}
}

// The mismatch is seen by a caller that reads exactly the announced size
// and never waits for io.EOF, as upload clients filling a part buffer do.
func TestVerifierFailsTheReadThatCompletesTheContent(t *testing.T) {
	t.Parallel()
	d := digest.FromString("good content")
	for _, r := range []func(string) io.Reader{
		func(s string) io.Reader { return strings.NewReader(s) },
		func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
	} {
		buf := make([]byte, len("good content"))
		if _, err := io.ReadFull(oci.NewVerifier(r("bad content!"), d, int64(len(buf)), 0), buf); !errors.Is(err, oci.ErrDigestMismatch) {
			t.Errorf("ReadFull of wrong content = %v, want oci.ErrDigestMismatch", err)
		}
		if _, err := io.ReadFull(oci.NewVerifier(r("good content"), d, int64(len(buf)), 0), buf); err != nil {
			t.Errorf("ReadFull of the right content = %v", err)
		}
		if _, err := io.ReadAll(oci.NewVerifier(r("bad content!"), d, -1, 0)); !errors.Is(err, oci.ErrDigestMismatch) {
			t.Errorf("ReadAll of wrong content of unknown size = %v, want oci.ErrDigestMismatch", err)
		}
		if got, err := io.ReadAll(oci.NewVerifier(r("good content"), d, -1, 0)); err != nil || string(got) != "good content" {
			t.Errorf("ReadAll of the right content = %q, %v", got, err)
		}
	}
}
