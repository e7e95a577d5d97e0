package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeregistry/edge/internal/testkit"
)

// writePair writes a self-signed certificate with serial and its key.
func writePair(t *testing.T, certFile, keyFile string, serial int64, at time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: at.Add(-time.Hour), NotAfter: at.Add(time.Hour), DNSNames: []string{"edge.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), at)
	write(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), at)
}

func write(t *testing.T, path string, data []byte, at time.Time) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

// serialOf returns the serial of the certificate a TLS handshake with a
// server configured as the API's gets.
func serialOf(t *testing.T, r *certReloader) int64 {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: r.get, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: "edge.test"}) // the serial is what is checked
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// A renewed certificate is served without a restart, once the files have
// changed; files that do not load keep the pair in use.
func TestCertificateReloadedWhenItsFilesChange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	clock := testkit.NewClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	writePair(t, certFile, keyFile, 1, clock.Now())
	r, err := newCertReloader(certFile, keyFile, clock.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if s := serialOf(t, r); s != 1 {
		t.Fatalf("serial %d, want 1", s)
	}

	writePair(t, certFile, keyFile, 2, clock.Now().Add(time.Minute))
	if s := serialOf(t, r); s != 1 {
		t.Fatalf("looked again within a second: serial %d", s)
	}
	clock.Advance(2 * time.Second)
	if s := serialOf(t, r); s != 2 {
		t.Fatalf("after the renewal: serial %d, want 2", s)
	}

	write(t, certFile, []byte("half written"), clock.Now().Add(2*time.Minute))
	clock.Advance(2 * time.Second)
	if s := serialOf(t, r); s != 2 {
		t.Fatalf("with files that do not load: serial %d, want the previous 2", s)
	}
	writePair(t, certFile, keyFile, 3, clock.Now().Add(3*time.Minute))
	clock.Advance(2 * time.Second)
	if s := serialOf(t, r); s != 3 {
		t.Fatalf("after a good renewal again: serial %d, want 3", s)
	}
	if _, err := newCertReloader(filepath.Join(dir, "missing.crt"), keyFile, clock.Now, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a node started without its certificate")
	}
}
