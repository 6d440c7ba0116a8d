package gitinit

import (
	"os"
	"testing"
)

// TestMain removes the generated repositories of the conformance suite.
func TestMain(m *testing.M) {
	code := m.Run()
	if conformanceDir != "" {
		os.RemoveAll(conformanceDir)
	}
	os.Exit(code)
}
