package localtier

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
)

// Key prefixes; see doc.go.
const (
	sep           = "\x00"
	prefixBlob    = "b" + sep
	prefixMan     = "m" + sep
	prefixTag     = "t" + sep
	prefixLink    = "l" + sep
	prefixPin     = "p" + sep
	formatVersion = 1
)

var errCorrupt = errors.New("localtier: corrupt index value")

func blobKey(d digest.Digest) []byte { return []byte(prefixBlob + string(d)) }
func manKey(d digest.Digest) []byte  { return []byte(prefixMan + string(d)) }

func tagPrefix(route, repo string) []byte {
	return []byte(prefixTag + route + sep + repo + sep)
}

func tagKey(route, repo, tag string) []byte {
	return []byte(prefixTag + route + sep + repo + sep + tag)
}

func linkKey(route, repo string, d digest.Digest) []byte {
	return []byte(prefixLink + route + sep + repo + sep + string(d))
}

// validDigest rejects digests that are malformed or use an unavailable
// algorithm.
func validDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: digest %q: %w", ErrInvalid, string(d), err)
	}
	return nil
}

// validName rejects empty names and names containing the key separator.
func validName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalid, kind)
	}
	if strings.Contains(name, sep) {
		return fmt.Errorf("%w: %s %q contains NUL", ErrInvalid, kind, name)
	}
	return nil
}

func validRepo(route, repo string) error {
	if err := validName("route", route); err != nil {
		return err
	}
	return validName("repository", repo)
}

// encoder appends fields to a byte slice.
type encoder struct{ b []byte }

// newEncoder starts a value of about size bytes with the format version.
func newEncoder(size int) encoder {
	return encoder{b: append(make([]byte, 0, size+1), formatVersion)}
}

func (e *encoder) varint(v int64) { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) time(t time.Time) { e.varint(timeNano(t)) }

// decoder reads fields back; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	if d.err != nil {
		return ""
	}
	l, n := binary.Uvarint(d.b)
	if n <= 0 || uint64(len(d.b)-n) < l {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[n : n+int(l)])
	d.b = d.b[n+int(l):]
	return s
}

func (d *decoder) time() time.Time { return nanoTime(d.varint()) }

func (d *decoder) version() {
	if len(d.b) == 0 || d.b[0] != formatVersion {
		d.err = errCorrupt
		return
	}
	d.b = d.b[1:]
}

// timeNano maps the zero time to 0 so that it survives a round trip.
func timeNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanoTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// blobRecord is the index value of a blob.
type blobRecord struct {
	Size      int64
	MediaType string
	Added     int64 // unix nanoseconds
	Accessed  int64 // unix nanoseconds
}

func encodeBlob(r blobRecord) []byte {
	e := newEncoder(32 + len(r.MediaType))
	e.varint(r.Size)
	e.varint(r.Added)
	e.varint(r.Accessed)
	e.str(r.MediaType)
	return e.b
}

func decodeBlob(b []byte) (blobRecord, error) {
	d := decoder{b: b}
	d.version()
	r := blobRecord{Size: d.varint(), Added: d.varint(), Accessed: d.varint(), MediaType: d.str()}
	return r, d.err
}

func encodeManifest(m Manifest) []byte {
	e := newEncoder(16 + len(m.MediaType) + len(m.Body))
	e.str(m.MediaType)
	e.b = append(e.b, m.Body...)
	return e.b
}

func decodeManifest(b []byte) (Manifest, error) {
	d := decoder{b: b}
	d.version()
	mt := d.str()
	if d.err != nil {
		return Manifest{}, d.err
	}
	return Manifest{MediaType: mt, Body: bytes.Clone(d.b)}, nil
}

func encodeTag(r oci.TagRecord) []byte {
	e := newEncoder(64 + len(r.MediaType) + len(r.Source) + len(r.Region))
	e.str(string(r.Digest))
	e.str(r.MediaType)
	e.varint(r.Size)
	e.time(r.FetchedAt)
	e.str(r.Source)
	e.str(r.Region)
	return e.b
}

func decodeTag(b []byte) (oci.TagRecord, error) {
	d := decoder{b: b}
	d.version()
	r := oci.TagRecord{
		Digest:    digest.Digest(d.str()),
		MediaType: d.str(),
		Size:      d.varint(),
		FetchedAt: d.time(),
		Source:    d.str(),
		Region:    d.str(),
	}
	return r, d.err
}
