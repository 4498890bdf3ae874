package secretbox_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelplane/modelplane/secretbox"
)

func newKey(t *testing.T) *secretbox.Key {
	t.Helper()
	text, err := secretbox.Generate()
	if err != nil {
		t.Fatal(err)
	}
	k, err := secretbox.ParseKey(text)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSeal_RoundTripsAndNeverHoldsThePlainValue(t *testing.T) {
	k := newKey(t)
	value := []byte("hf_plain_value_123")
	a, err := k.Seal("ws1", "hf_token", value)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := k.Seal("ws1", "hf_token", value)
	if bytes.Contains(a, value) {
		t.Fatalf("sealed value %x holds the plain value", a)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two seals of one value are equal: the nonce must be random")
	}
	got, err := k.Open("ws1", "hf_token", a)
	if err != nil || string(got) != string(value) {
		t.Fatalf("Open = %q, %v; want %q", got, err, value)
	}
}

func TestOpen_FailsWithAnotherKeyATamperedValueOrAnotherRow(t *testing.T) {
	k, other := newKey(t), newKey(t)
	sealed, err := k.Seal("ws1", "hf_token", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	cases := map[string]func() ([]byte, error){
		"wrong key":       func() ([]byte, error) { return other.Open("ws1", "hf_token", sealed) },
		"tampered":        func() ([]byte, error) { return k.Open("ws1", "hf_token", tampered) },
		"other workspace": func() ([]byte, error) { return k.Open("ws2", "hf_token", sealed) },
		"other name":      func() ([]byte, error) { return k.Open("ws1", "other", sealed) },
		"truncated":       func() ([]byte, error) { return k.Open("ws1", "hf_token", sealed[:5]) },
	}
	for name, open := range cases {
		if got, err := open(); !errors.Is(err, secretbox.ErrOpen) {
			t.Errorf("%s: Open = %q, %v; want ErrOpen", name, got, err)
		}
	}
}

func TestLoad_ReadsTheFileFirstThenTheVariable(t *testing.T) {
	text, _ := secretbox.Generate()
	path := filepath.Join(t.TempDir(), "secrets-key")
	if err := os.WriteFile(path, []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile, err := secretbox.Load(path, "not base64!")
	if err != nil || fromFile == nil {
		t.Fatalf("Load(file) = %v, %v", fromFile, err)
	}
	sealed, _ := fromFile.Seal("w", "n", []byte("v"))
	fromEnv, err := secretbox.Load("", text)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fromEnv.Open("w", "n", sealed); err != nil {
		t.Fatalf("the same key from the variable does not open the file key's value: %v", err)
	}
	if k, err := secretbox.Load("", ""); k != nil || err != nil {
		t.Fatalf("Load with neither = %v, %v; want nil, nil", k, err)
	}
	if _, err := secretbox.Load("", "c2hvcnQ="); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
	if _, err := secretbox.Load(filepath.Join(t.TempDir(), "missing"), ""); err == nil {
		t.Fatal("a missing key file was accepted")
	}
}
