package main

import (
	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/troupehq/troupe/internal/bytesize"
)

// byteSize is a setting in bytes that operators write with a unit: 512MiB,
// 2GiB, or a plain number of bytes.
type byteSize bytesize.Size

func (s byteSize) String() string { return bytesize.Size(s).String() }

// UnmarshalYAML reads the setting from a config file and, when it is not a
// size, points at the value with its line as the file's other errors do.
func (s *byteSize) UnmarshalYAML(node ast.Node) error {
	tk := node.GetToken()
	v, err := bytesize.Parse(tk.Value)
	if err != nil {
		return &yaml.SyntaxError{Message: err.Error(), Token: tk}
	}
	*s = byteSize(v)
	return nil
}
