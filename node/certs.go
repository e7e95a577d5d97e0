package node

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckEvery is how often, at most, a handshake looks whether the
// certificate files changed.
const certCheckEvery = time.Second

// certReloader hands TLS handshakes the key pair of its files, loaded again
// when either file changes (renewed by certbot, cert-manager, ...), so that
// a new certificate needs no restart. A change that does not load (a key
// that does not match yet, a file half written) keeps the pair in use and
// is tried again at the next look.
type certReloader struct {
	certFile, keyFile string
	now               func() time.Time
	log               *slog.Logger

	mu       sync.Mutex
	cert     *tls.Certificate
	stamp    [2]fileStamp // of the files the pair was loaded from
	failed   [2]fileStamp // of files that did not load: tried again after a minute
	failedAt time.Time
	checked  time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// newCertReloader loads the pair once: a node does not start without it.
func newCertReloader(certFile, keyFile string, now func() time.Time, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, now: now, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	r.checked = now()
	return r, nil
}

func (r *certReloader) load() error {
	cs, cerr := stampOf(r.certFile)
	ks, kerr := stampOf(r.keyFile)
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err = firstErr(cerr, kerr, err); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	r.cert, r.stamp = &cert, [2]fileStamp{cs, ks}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// get is tls.Config.GetCertificate.
func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= certCheckEvery {
		r.checked = now
		cs, cerr := stampOf(r.certFile)
		ks, kerr := stampOf(r.keyFile)
		st := [2]fileStamp{cs, ks}
		if cerr == nil && kerr == nil && st != r.stamp && (st != r.failed || now.Sub(r.failedAt) >= time.Minute) {
			if err := r.load(); err != nil {
				r.failed, r.failedAt = st, now
				r.log.Warn("new TLS certificate files do not load; serving the previous pair", "err", err)
			} else {
				r.log.Info("TLS certificate reloaded", "cert_file", r.certFile)
			}
		}
	}
	return r.cert, nil
}
