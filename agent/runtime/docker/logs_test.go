package docker

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
)

func frame(stream byte, data string) []byte {
	hdr := make([]byte, 8, 8+len(data))
	hdr[0] = stream
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(data)))
	return append(hdr, data...)
}

func TestDemuxTail_KeepsLastLinesPerStream(t *testing.T) {
	var b bytes.Buffer
	for i := 1; i <= 25; i++ {
		b.Write(frame(1, fmt.Sprintf("out %d\n", i)))
	}
	b.Write(frame(1, "two lines\nin one frame\n"))
	b.Write(frame(2, "unfinished stderr"))
	b.Write(frame(1, "unfinished stdout"))

	got, err := demuxTail(&b, 5)
	if err != nil {
		t.Fatalf("demuxTail: %v", err)
	}
	want := []string{"out 25", "two lines", "in one frame", "unfinished stderr", "unfinished stdout"}
	if !slices.Equal(got, want) {
		t.Errorf("lines:\n got %q\nwant %q", got, want)
	}
}

func TestDemuxTail_TruncatedStreamKeepsWhatArrived(t *testing.T) {
	var b bytes.Buffer
	b.Write(frame(2, "panic: boom\n"))
	f := frame(1, "cut in the mid")
	b.Write(f[:len(f)-4])

	got, err := demuxTail(&b, 20)
	if err == nil {
		t.Error("demuxTail of a truncated stream: no error, want one")
	}
	if want := []string{"panic: boom", "cut in the"}; !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

func TestDemuxTail_RejectsOversizedFrame(t *testing.T) {
	// A TTY stream read as multiplexed: "hello wo" parsed as a header gives a huge size.
	if _, err := demuxTail(bytes.NewReader([]byte("hello world, this is raw\n")), 20); err == nil {
		t.Error("want an error for a stream that is not multiplexed")
	}
}

func TestSplitImageRef(t *testing.T) {
	for _, tc := range []struct{ ref, name, tag string }{
		{"nginx", "nginx", "latest"},
		{"nginx:1.27", "nginx", "1.27"},
		{"ghcr.io/acme/llm:v2", "ghcr.io/acme/llm", "v2"},
		{"registry:5000/team/llm", "registry:5000/team/llm", "latest"},
		{"registry:5000/team/llm:v2", "registry:5000/team/llm", "v2"},
		{"llm@sha256:abcd", "llm", "sha256:abcd"},
		{"registry:5000/llm:v2@sha256:abcd", "registry:5000/llm", "sha256:abcd"},
	} {
		name, tag := splitImageRef(tc.ref)
		if name != tc.name || tag != tc.tag {
			t.Errorf("splitImageRef(%q) = %q, %q; want %q, %q", tc.ref, name, tag, tc.name, tc.tag)
		}
	}
}
