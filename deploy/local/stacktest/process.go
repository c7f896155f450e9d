package stacktest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
)

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// BuildBinary builds the main package pkg (e.g. "./cmd/bandit-ingest",
// relative to the module root) once per test binary and returns its path.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "banditstream-bin-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = moduleRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Process is a real child process of a test: it can be killed with
// SIGKILL, stopped with SIGTERM, and started again with the same arguments.
type Process struct {
	t    testing.TB
	path string
	args []string
	env  []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	runs int
}

// StartProcess starts path with args; its output goes to a file in the
// test's temporary folder, printed when the test fails. It is killed when
// the test ends.
func StartProcess(t testing.TB, path string, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{t: t, path: path, args: args, env: env, log: filepath.Join(t.TempDir(), filepath.Base(path)+".log")}
	p.Start()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			if b, err := os.ReadFile(p.log); err == nil {
				tail := b
				if len(tail) > 4000 {
					tail = tail[len(tail)-4000:]
				}
				t.Logf("--- tail of %s ---\n%s", p.log, tail)
			}
		}
	})
	return p
}

// Start starts the process (again).
func (p *Process) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(p.path, p.args...)
	// The local stack's credentials unless the test gives others (later
	// entries win).
	cmd.Env = append(append(os.Environ(), CQLEnv()...), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("starting %s: %v", p.path, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	p.runs++
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() { p.signal(syscall.SIGKILL, 0) }

// Stop sends SIGTERM and waits up to timeout for a clean exit; it returns
// how long the exit took and whether it happened in time.
func (p *Process) Stop(timeout time.Duration) (time.Duration, bool) {
	return p.signal(syscall.SIGTERM, timeout)
}

func (p *Process) signal(sig syscall.Signal, timeout time.Duration) (time.Duration, bool) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return 0, true
	}
	start := time.Now()
	_ = cmd.Process.Signal(sig)
	if timeout <= 0 {
		<-done
		return time.Since(start), true
	}
	select {
	case <-done:
		return time.Since(start), true
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return time.Since(start), false
	}
}

// ExitCode is the exit code of the last run (-1 if killed by a signal or
// still running).
func (p *Process) ExitCode() int {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return -1
	}
	select {
	case <-done: // Wait has returned: ProcessState is set and no longer written
		return cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Lag returns the group's total lag on topic: end offsets minus committed
// offsets, over all partitions (a partition without a commit counts whole).
func Lag(ctx context.Context, brokers []string, group, topic string) (int64, error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return 0, md.Topics[0].Error
	}
	var parts []int
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		parts = append(parts, p.ID)
		reqs = append(reqs, kafka.LastOffsetOf(p.ID), kafka.FirstOffsetOf(p.ID))
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, err
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return 0, err
	}
	done := map[int]int64{}
	for _, c := range committed.Topics[topic] {
		done[c.Partition] = c.CommittedOffset
	}
	var lag int64
	for _, po := range ends.Topics[topic] {
		if po.Error != nil {
			return 0, po.Error
		}
		c := done[po.Partition]
		if c < 0 {
			c = po.FirstOffset
		}
		lag += po.LastOffset - c
	}
	return lag, nil
}

// WaitForLag waits until the group has consumed everything on topic.
func WaitForLag(t testing.TB, brokers []string, group, topic string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last int64
	var lastErr error
	for {
		lag, err := Lag(ctx, brokers, group, topic)
		if err == nil && lag == 0 {
			return
		}
		last, lastErr = lag, err
		select {
		case <-ctx.Done():
			t.Fatalf("group %s still has lag %d on %s after %s (last error: %v)", group, last, topic, timeout, lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Pid is the process id of the current run.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Output returns everything the process has written so far, across runs.
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// StartRedis starts a Redis server of the local stack's installation on a
// free loopback port, requiring password, without persistence, for tests
// of authenticated paths; it stops with the test. It returns the address.
func StartRedis(t testing.TB, password string) string {
	t.Helper()
	return StartRedisWith(t, "--requirepass", password)
}

// StartRedisWith starts a Redis server as StartRedis does, with the extra
// arguments args (a maxmemory, a policy), and returns its address.
func StartRedisWith(t testing.TB, args ...string) string {
	t.Helper()
	port := freePort(t)
	startRedis(t, port, append([]string{"--port", strconv.Itoa(port)}, args...)...)
	return "127.0.0.1:" + strconv.Itoa(port)
}

// FillRedis sets the maxmemory of the Redis rdb reaches to half of what it
// uses: with noeviction, every write is refused until maxmemory is raised
// again (CONFIG SET maxmemory 0).
func FillRedis(t testing.TB, rdb *redis.Client) {
	t.Helper()
	ctx := context.Background()
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			used, _ := strconv.ParseInt(v, 10, 64)
			if err := rdb.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used/2, 10)).Err(); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("no used_memory in INFO memory")
}

// StartRedisTLS starts a Redis server that accepts only TLS, with a
// certificate for 127.0.0.1 made for the test; it returns the address and
// the PEM file of the certificate to trust.
func StartRedisTLS(t testing.TB) (addr, caFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile)
	port := freePort(t)
	startRedis(t, port, "--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", certFile, "--tls-auth-clients", "no")
	return "127.0.0.1:" + strconv.Itoa(port), certFile
}

// FreeAddr returns a free loopback address, e.g. for a daemon's -ops-addr.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(freePort(t))
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startRedis runs redis-server with args, without persistence, until the
// test ends, and waits until port accepts connections. Under -short the test
// is skipped, as the other integration tests are.
func startRedis(t testing.TB, port int, args ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts a Redis server; not run with -short")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not installed (make up installs it): " + err.Error())
	}
	dir := t.TempDir()
	args = append(args, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server on %s did not start:\n%s", addr, b)
		}
	}
}

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its
// key as PEM files.
func writeSelfSigned(t testing.TB, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Python returns the interpreter of the project's Python test clients
// (confluent-kafka and others, installed by deploy/local/python.sh, which
// make test runs), or fails.
func Python(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the Python test clients; not run with -short")
	}
	p := filepath.Join(moduleRoot(), ".local", "python", "bin", "python")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the Python test clients are not installed (deploy/local/python.sh; make test runs it): %v", err)
	}
	return p
}
