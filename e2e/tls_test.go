package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/edgeregistry/edge/internal/testkit"
)

// testCA signs the node's certificates; clients trust it alone.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a certificate for 127.0.0.1 with serial, and its key, as a
// renewal does: the key first, then the certificate.
func (ca *testCA) issue(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for path, b := range map[string]*pem.Block{keyFile: {Type: "EC PRIVATE KEY", Bytes: kder}, certFile: {Type: "CERTIFICATE", Bytes: der}} {
		tmp := path + ".new"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
}

// servedSerial is the serial of the certificate the node serves now.
func (ca *testCA) servedSerial(t *testing.T, host string) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", host, &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// crane pulls through a node serving TLS, verifying its certificate, before
// and after the certificate is renewed on disk; the node is not restarted.
func TestCranePullsAcrossACertificateRenewal(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	img := pushImage(t, o, "library/e2e-tls", "v1")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca := newTestCA(t)
	ca.issue(t, certFile, keyFile, 100)
	cfg := edgeConfig(filepath.Join(dir, "data"), []route{{Name: "docker.io", Origin: o.URL, Default: true}}) +
		"tls: {cert_file: " + certFile + ", key_file: " + keyFile + "}\n"
	n := startNode(t, dir, cfg)

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	pull := func() {
		t.Helper()
		ref, err := name.ParseReference(n.Host + "/" + img.Repo + ":" + img.Tag) // https: the certificate is checked
		if err != nil {
			t.Fatal(err)
		}
		if got := pullLayout(t, ref, false, remote.WithTransport(tr)); got != img.Digest {
			t.Fatalf("pulled %s, want %s", got, img.Digest)
		}
	}
	pull()
	if s := ca.servedSerial(t, n.Host); s != 100 {
		t.Fatalf("serving serial %d, want 100", s)
	}

	ca.issue(t, certFile, keyFile, 101) // renewed, as cert-manager or certbot do
	testkit.Eventually(t, "the renewed certificate to be served", func() bool { return ca.servedSerial(t, n.Host) == 101 })
	tr.CloseIdleConnections() // new connections see the new certificate
	pull()
}
