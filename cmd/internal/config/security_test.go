package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banditstream/banditstream/cmd/internal/config"
)

const password = "hunter2-very-secret"

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "banditstream-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTLSConfig(t *testing.T) {
	cert, key := writeCert(t)
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	_ = os.WriteFile(notPEM, []byte("nothing"), 0o600)
	for _, tc := range []struct {
		name string
		tls  config.TLS
		err  string
		ca   bool
	}{
		{name: "off", tls: config.TLS{}},
		{name: "on, system roots", tls: config.TLS{Enabled: true}},
		{name: "on, own CA and client certificate", tls: config.TLS{Enabled: true, CAFile: cert, CertFile: cert, KeyFile: key}, ca: true},
		{name: "files without TLS", tls: config.TLS{CAFile: cert}, err: "not enabled"},
		{name: "certificate without key", tls: config.TLS{Enabled: true, CertFile: cert}, err: "both"},
		{name: "CA file without PEM", tls: config.TLS{Enabled: true, CAFile: notPEM}, err: "no PEM certificate"},
		{name: "missing CA file", tls: config.TLS{Enabled: true, CAFile: "/nonexistent.pem"}, err: "reading the CA file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.tls.Config()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (cfg != nil) != tc.tls.Enabled || (tc.ca && (cfg.RootCAs == nil || len(cfg.Certificates) != 1)) {
				t.Fatalf("config %+v", cfg)
			}
		})
	}
}

// SASL mechanisms come from the flags; a password file is read; no error
// or log form ever holds the password.
func TestKafkaSecurity(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) config.Connections {
		var c config.Connections
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		c.Register(fs)
		if err := config.Parse(fs, args, func(string) (string, bool) { return "", false }); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		args      []string
		mechanism string
		err       string
	}{
		{args: nil},
		{args: []string{"-kafka-sasl", "plain", "-kafka-username", "u", "-kafka-password", password}, mechanism: "PLAIN"},
		{args: []string{"-kafka-sasl", "scram-sha-512", "-kafka-username", "u", "-kafka-password-file", pwFile}, mechanism: "SCRAM-SHA-512"},
		{args: []string{"-kafka-sasl", "SCRAM-SHA-256", "-kafka-username", "u", "-kafka-password", password}, mechanism: "SCRAM-SHA-256"},
		{args: []string{"-kafka-username", "u", "-kafka-password", password}, err: "without -kafka-sasl"},
		{args: []string{"-kafka-sasl", "kerberos", "-kafka-password", password}, err: "is not plain"},
		{args: []string{"-kafka-sasl", "plain", "-kafka-password", password, "-kafka-password-file", pwFile}, err: "both set"},
		{args: []string{"-kafka-sasl", "plain", "-kafka-password-file", "/nonexistent"}, err: "-kafka-password-file"},
	} {
		c := parse(tc.args...)
		tr, err := c.Kafka.Transport()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), password) {
				t.Errorf("%v: error %v, want one with %q and without the password", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		got := ""
		if tr.SASL != nil {
			got = tr.SASL.Name()
		}
		if got != tc.mechanism {
			t.Errorf("%v: mechanism %q, want %q", tc.args, got, tc.mechanism)
		}
		if d, err := c.Kafka.Dialer(); err != nil || (d.SASLMechanism == nil) != (tc.mechanism == "") {
			t.Errorf("%v: dialer %+v, %v", tc.args, d, err)
		}
	}
	c := parse("-kafka-sasl", "plain", "-kafka-password", password, "-redis-password", password, "-cql-password", password)
	if s := strings.Join([]string{c.Redacted().Kafka.Password, c.Redacted().Redis.Password, c.Redacted().CQL.Password}, " "); strings.Contains(s, password) {
		t.Fatalf("Redacted keeps a password: %s", s)
	}
}

func TestPasswordFiles(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(password+"\r\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cql := config.CQL{Hosts: []string{"127.0.0.1:9042"}, Username: "u", PasswordFile: pwFile, Timeout: time.Second}
	cluster, err := cql.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ReplaceAll(fmtAuth(cluster.Authenticator), " ", ""), password) {
		t.Fatal("the CQL password file was not used")
	}
	r := config.Redis{Addr: "127.0.0.1:6379", Password: "x", PasswordFile: pwFile}
	if _, err := r.Client(); err == nil || strings.Contains(err.Error(), password) {
		t.Fatalf("password and file both set: %v", err)
	}
}

func fmtAuth(a any) string { return fmt.Sprintf("%+v", a) }
