package local_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The repository's shape: the README stays a landing page that reaches
// every document, every relative link in the docs points at a file that
// exists, and git holds no large (compiled or generated) file.

const (
	readmeMaxLines = 250
	trackedMaxSize = 1 << 20
)

var mdLink = regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestReadmeIsALandingPage(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	if n := strings.Count(readme, "\n"); n > readmeMaxLines {
		t.Errorf("README.md has %d lines, at most %d: reference belongs in docs/", n, readmeMaxLines)
	}
	first := strings.Index(readme, "make demo")
	if first < 0 || first > strings.Index(readme, "\n## ") || !strings.Contains(readme[:strings.Index(readme, "\n## ")], "make test") {
		t.Error("README.md does not start with make demo and make test")
	}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	for _, d := range docs {
		if rel := "docs/" + filepath.Base(d); !strings.Contains(readme, "]("+rel+")") {
			t.Errorf("README.md does not link %s", rel)
		}
	}
}

func TestDocLinksResolve(t *testing.T) {
	root := repoRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	files = append(files, filepath.Join(root, "README.md"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), target)); err != nil {
				t.Errorf("%s links %s, which does not exist", strings.TrimPrefix(f, root+"/"), target)
			}
		}
	}
}

func TestNoLargeTrackedFiles(t *testing.T) {
	root := repoRoot(t)
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		fi, err := os.Stat(filepath.Join(root, name))
		if err != nil {
			continue // deleted in the work tree
		}
		if fi.Size() > trackedMaxSize {
			t.Errorf("%s is tracked and %d bytes: generated or compiled files stay out of git", name, fi.Size())
		}
	}
}
