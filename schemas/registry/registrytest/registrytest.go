// Package registrytest is an in-memory schema registry speaking the part
// of Confluent's REST API that the pipeline and the serializers call
// (register a schema under a subject, list an id's subjects and versions,
// read a schema by id), for tests.
package registrytest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Schema is one registered schema.
type Schema struct {
	Type     string // PROTOBUF, JSON or AVRO
	Text     string
	ID       uint32
	Subjects map[string]int // subject: version
}

// Registry is the server and what it holds.
type Registry struct {
	*httptest.Server
	mu       sync.Mutex
	schemas  []*Schema
	versions map[string]int // subject: latest version
	// Down makes every request answer 503 while set.
	Down atomic.Bool
	// Requests counts the requests answered, by "METHOD path".
	requests map[string]int
	// User and Password, if set, are required by basic authentication.
	User, Password string
}

// New starts a registry, closed at the end of the test.
func New(t testing.TB) *Registry {
	r := &Registry{versions: map[string]int{}, requests: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

// Register registers a schema under subject as a client would, and
// returns its id.
func (r *Registry) Register(subject, typ, text string) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.register(subject, typ, text).ID
}

// Schemas returns a copy of what is registered.
func (r *Registry) Schemas() []Schema {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Schema, len(r.schemas))
	for i, s := range r.schemas {
		out[i] = *s
		out[i].Subjects = map[string]int{}
		for k, v := range s.Subjects {
			out[i].Subjects[k] = v
		}
	}
	return out
}

// Requests returns how many requests of "METHOD path-prefix" were answered.
func (r *Registry) Requests(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.requests {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

func (r *Registry) register(subject, typ, text string) *Schema {
	if typ == "" {
		typ = "AVRO"
	}
	var s *Schema
	for _, x := range r.schemas {
		if x.Type == typ && x.Text == text {
			s = x
		}
	}
	if s == nil {
		s = &Schema{Type: typ, Text: text, ID: uint32(len(r.schemas) + 1), Subjects: map[string]int{}}
		r.schemas = append(r.schemas, s)
	}
	if _, ok := s.Subjects[subject]; !ok {
		r.versions[subject]++
		s.Subjects[subject] = r.versions[subject]
	}
	return s
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	if r.Down.Load() {
		http.Error(w, `{"error_code":50301,"message":"down"}`, http.StatusServiceUnavailable)
		return
	}
	if r.User != "" || r.Password != "" {
		if u, p, ok := req.BasicAuth(); !ok || u != r.User || p != r.Password {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error_code": 401, "message": "Unauthorized"})
			return
		}
	}
	path := req.URL.EscapedPath()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests[req.Method+" "+req.URL.Path]++
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case req.Method == http.MethodPost && len(parts) == 3 && parts[0] == "subjects" && parts[2] == "versions":
		subject, err := url.PathUnescape(parts[1])
		var body struct {
			Schema     string `json:"schema"`
			SchemaType string `json:"schemaType"`
		}
		if err != nil || json.NewDecoder(req.Body).Decode(&body) != nil || body.Schema == "" {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error_code": 42201, "message": "Invalid schema"})
			return
		}
		s := r.register(subject, body.SchemaType, body.Schema)
		writeJSON(w, http.StatusOK, map[string]any{"id": s.ID})
	case req.Method == http.MethodGet && len(parts) >= 3 && parts[0] == "schemas" && parts[1] == "ids":
		id, err := strconv.ParseUint(parts[2], 10, 32)
		if err != nil || id == 0 || int(id) > len(r.schemas) {
			writeJSON(w, http.StatusNotFound, map[string]any{"error_code": 40403, "message": "Schema not found"})
			return
		}
		s := r.schemas[id-1]
		if len(parts) == 4 && parts[3] == "versions" {
			var out []map[string]any
			for subject, v := range s.Subjects {
				out = append(out, map[string]any{"subject": subject, "version": v})
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"schema": s.Text, "schemaType": s.Type})
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error_code": 404, "message": "not served by this registry"})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
