package keeper

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// FileSource reads a YAML file; a change of its size or modification time is
// a new version.
type FileSource struct {
	Path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
}

// Load reads the file and remembers its version.
func (f *FileSource) Load(_ context.Context) ([]byte, error) {
	st, err := os.Stat(f.Path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.modTime, f.size = st.ModTime(), st.Size()
	f.mu.Unlock()
	return data, nil
}

// Changed compares the file's size and modification time with the last Load.
func (f *FileSource) Changed(_ context.Context) (bool, error) {
	st, err := os.Stat(f.Path)
	if err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return !st.ModTime().Equal(f.modTime) || st.Size() != f.size, nil
}

func (f *FileSource) String() string { return "file:" + f.Path }

// BytesSource serves a fixed configuration, such as the embedded demo one.
type BytesSource struct {
	Name string
	Data []byte
}

// Load returns the bytes.
func (b *BytesSource) Load(context.Context) ([]byte, error) { return b.Data, nil }

// Changed is always false: the bytes never change.
func (b *BytesSource) Changed(context.Context) (bool, error) { return false, nil }

func (b *BytesSource) String() string { return fmt.Sprintf("embedded:%s", b.Name) }
