package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// TLS is how to reach one service over TLS.
type TLS struct {
	Enabled bool
	// CAFile is a PEM bundle of the certificate authorities to trust;
	// empty: the system's.
	CAFile string
	// CertFile and KeyFile are a client certificate, for mutual TLS.
	CertFile, KeyFile string
}

// register defines -<service>-tls, -<service>-tls-ca, -<service>-tls-cert
// and -<service>-tls-key.
func (t *TLS) register(fs *flag.FlagSet, service, what string) {
	fs.BoolVar(&t.Enabled, service+"-tls", false, "reach "+what+" over TLS")
	fs.StringVar(&t.CAFile, service+"-tls-ca", "", what+": PEM file of the certificate authorities to trust (default: the system's)")
	fs.StringVar(&t.CertFile, service+"-tls-cert", "", what+": PEM client certificate, for mutual TLS")
	fs.StringVar(&t.KeyFile, service+"-tls-key", "", what+": PEM key of the client certificate")
}

// Config returns the TLS configuration, or nil when TLS is off.
func (t TLS) Config() (*tls.Config, error) {
	if !t.Enabled {
		if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" {
			return nil, errors.New("TLS files given but TLS is not enabled")
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no PEM certificate in %s", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Secret returns a password given directly or in a file (its first line).
// Errors name the flag and the file, never the content.
func Secret(value, file, flagName string) (string, error) {
	if file == "" {
		return value, nil
	}
	if value != "" {
		return "", fmt.Errorf("-%s and -%s-file are both set; give one", flagName, flagName)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("-%s-file: %w", flagName, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r"), nil
}

// SASL mechanisms for Kafka.
const (
	SASLNone        = ""
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

func (k *Kafka) registerSecurity(fs *flag.FlagSet) {
	k.TLS.register(fs, "kafka", "Kafka")
	fs.StringVar(&k.SASL, "kafka-sasl", SASLNone, "Kafka SASL mechanism: plain, scram-sha-256 or scram-sha-512 (empty: none)")
	fs.StringVar(&k.Username, "kafka-username", "", "Kafka SASL user name")
	fs.StringVar(&k.Password, "kafka-password", "", "Kafka SASL password (prefer the environment variable or -kafka-password-file)")
	fs.StringVar(&k.PasswordFile, "kafka-password-file", "", "file holding the Kafka SASL password")
}

func (k Kafka) mechanism() (sasl.Mechanism, error) {
	password, err := Secret(k.Password, k.PasswordFile, "kafka-password")
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(k.SASL) {
	case SASLNone:
		if k.Username != "" || password != "" {
			return nil, errors.New("-kafka-username or a password given without -kafka-sasl")
		}
		return nil, nil
	case SASLPlain:
		return plain.Mechanism{Username: k.Username, Password: password}, nil
	case SASLScramSHA256, SASLScramSHA512:
		algo := scram.SHA256
		if strings.ToLower(k.SASL) == SASLScramSHA512 {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, k.Username, password)
		if err != nil {
			return nil, fmt.Errorf("-kafka-sasl %s: %w", k.SASL, err)
		}
		return m, nil
	}
	return nil, fmt.Errorf("-kafka-sasl: %q is not plain, scram-sha-256 or scram-sha-512", k.SASL)
}

// security returns the TLS configuration (nil: none) and the SASL
// mechanism (nil: none) of Kafka connections.
func (k Kafka) security() (*tls.Config, sasl.Mechanism, error) {
	tlsCfg, err := k.TLS.Config()
	if err != nil {
		return nil, nil, fmt.Errorf("-kafka-tls: %w", err)
	}
	m, err := k.mechanism()
	if err != nil {
		return nil, nil, err
	}
	return tlsCfg, m, nil
}

// Transport returns the transport of Kafka clients and writers: TLS, SASL,
// the client id and the dial timeout.
func (k Kafka) Transport() (*kafka.Transport, error) {
	tlsCfg, m, err := k.security()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{TLS: tlsCfg, SASL: m, ClientID: k.ClientID, DialTimeout: k.Timeout, MetadataTTL: 6 * time.Second}, nil
}

// Dialer returns the dialer of consumer groups and readers, with the same
// TLS and SASL.
func (k Kafka) Dialer() (*kafka.Dialer, error) {
	tlsCfg, m, err := k.security()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{Timeout: k.Timeout, DualStack: true, ClientID: k.ClientID, TLS: tlsCfg, SASLMechanism: m}, nil
}

// Client returns a Kafka client with Transport's settings.
func (k Kafka) Client() (*kafka.Client, error) {
	t, err := k.Transport()
	if err != nil {
		return nil, err
	}
	return &kafka.Client{Addr: kafka.TCP(k.Brokers...), Timeout: k.Timeout, Transport: t}, nil
}

// Clients returns Client and Dialer: what a command reading topics needs.
func (k Kafka) Clients() (*kafka.Client, *kafka.Dialer, error) {
	client, err := k.Client()
	if err != nil {
		return nil, nil, err
	}
	dialer, err := k.Dialer()
	if err != nil {
		return nil, nil, err
	}
	return client, dialer, nil
}
