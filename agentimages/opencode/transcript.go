package opencode

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/kubeopencode/kubeopencode/api/contract"
)

// Indent starts every line of a piece of text after its first one, and
// every line of a tool's output.
const Indent = "    "

// Transcript is where the launcher prints, the one way to its output:
// every piece of text goes through Redact and Escape, and every line of it
// starts with the prefix the launcher gives or with Indent, so that the
// agent cannot print a line the controller would read as the results line
// (or as any other line of the launcher's). It is safe for concurrent use;
// each piece of text is written whole.
type Transcript struct {
	mu  sync.Mutex
	w   io.Writer
	red *Redactor
}

// NewTranscript prints to w, redacting with red (which may be nil: URL
// userinfo only).
func NewTranscript(w io.Writer, red *Redactor) *Transcript {
	return &Transcript{w: w, red: red}
}

// Redactor is the transcript's redactor.
func (t *Transcript) Redactor() *Redactor { return t.red }

// Print prints text after prefix; the lines of text after its first start
// with Indent. prefix is the launcher's own and is printed as it is.
func (t *Transcript) Print(prefix, text string) {
	lines := strings.Split(strings.TrimRight(Escape(t.red.Redact(text)), "\n"), "\n")
	var b strings.Builder
	for i, l := range lines {
		if i == 0 {
			b.WriteString(prefix)
		} else {
			b.WriteString(Indent)
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, _ = io.WriteString(t.w, b.String())
}

// Printf prints a formatted message after prefix, as Print does.
func (t *Transcript) Printf(prefix, format string, args ...any) {
	t.Print(prefix, fmt.Sprintf(format, args...))
}

// Inline returns s redacted and escaped on one line: its line breaks
// escaped too, for a message printed after the launcher's prefix.
func (t *Transcript) Inline(s string) string {
	return strings.ReplaceAll(Escape(t.red.Redact(s)), "\n", `\n`)
}

// CopyLines prints every line read from r until it ends, each after
// prefix. Lines longer than 64 KiB are printed in pieces, each after
// prefix.
func (t *Transcript) CopyLines(r io.Reader, prefix string) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, _, err := br.ReadLine()
		if len(line) > 0 || err == nil {
			t.Print(prefix, string(line))
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// PrintResults prints the results line, the line only the launcher
// prints. Its text (the summary, the pull request URL, Git errors and
// branch names) is redacted and escaped as the transcript is: JSON would
// escape C0 characters but not C1 ones. The summary is expected to be cut
// to contract.MaxSummaryBytes already; escaping can lengthen it a little.
func (t *Transcript) PrintResults(r *contract.AgentResults) error {
	clean := func(s string) string { return Escape(t.red.Redact(s)) }
	c := *r
	c.Summary = clean(c.Summary)
	c.PullRequestURL = clean(c.PullRequestURL)
	c.Repositories = append([]contract.RepositoryResult(nil), r.Repositories...)
	for i := range c.Repositories {
		repo := &c.Repositories[i]
		repo.MountPath = clean(repo.MountPath)
		repo.Error = clean(repo.Error)
		// Branch names come from the remote: the agent chose them.
		if len(repo.PushedBranches) > 0 {
			repo.PushedBranches = append([]contract.PushedBranch(nil), repo.PushedBranches...)
			for j := range repo.PushedBranches {
				repo.PushedBranches[j].Name = clean(repo.PushedBranches[j].Name)
			}
		}
	}
	line, err := contract.ResultsLine(&c)
	if err != nil {
		return err
	}
	r.Version = c.Version
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err = io.WriteString(t.w, line)
	return err
}

// Summary is the results' summary of the model's final answer: redacted,
// escaped, then cut to contract.MaxSummaryBytes (redacting first, so that
// the cut cannot leave part of a credential).
func (t *Transcript) Summary(finalText string) string {
	return contract.TruncateUTF8(Escape(t.red.Redact(finalText)), contract.MaxSummaryBytes)
}

// Escape makes s safe to print to a terminal: it keeps line breaks and
// tabs and writes every other control character as an escape: C0
// characters, DEL and ESC (which starts terminal sequences) as \xNN, C1
// characters and the Unicode line separators and bidirectional overrides
// as \uNNNN. Bytes that are not UTF-8 become U+FFFD.
func Escape(s string) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || needsEscape(r) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteRune(utf8.RuneError)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case needsEscape(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func needsEscape(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || r == 0x7f:
		return true
	case 0x80 <= r && r <= 0x9f: // C1
		return true
	case r == 0x2028 || r == 0x2029: // line and paragraph separators
		return true
	case 0x202a <= r && r <= 0x202e, 0x2066 <= r && r <= 0x2069: // bidi overrides and isolates
		return true
	}
	return false
}
