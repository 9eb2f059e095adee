package main

// Issue 11: docs/architecture.md names the code it describes, and must stay
// true. Every backticked reference of the form `path/file.go` or
// `path/file.go Name` (Name: a function, a type, Type.Method for a method
// or an interface's method) must name a file of the repository that
// declares it.

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

const architectureDoc = "docs/architecture.md"

var (
	// backticked matches one inline code span.
	backticked = regexp.MustCompile("`([^`\n]+)`")
	// goRef is a whole reference: a repository-relative .go path, then
	// optionally one space and Name or Type.Method.
	goRef = regexp.MustCompile(`^([A-Za-z0-9_][A-Za-z0-9_./-]*\.go)(?: ([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?))?$`)
	// goFileStart is a span that begins like a file reference (then it
	// must be a whole one: a typo in the form must not hide a reference).
	goFileStart = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*\.go\b`)
)

func TestArchitectureDoc(t *testing.T) {
	doc, err := os.ReadFile(architectureDoc)
	if err != nil {
		t.Fatal(err)
	}
	files, names, problems := checkGoRefs(".", string(doc))
	t.Logf("%s: %d references checked, %d of them with a name", architectureDoc, files, names)
	for _, p := range problems {
		t.Errorf("%s: %s", architectureDoc, p)
	}
	// Guard against the check passing vacuously (a pattern that stopped
	// matching the doc's references).
	if files < 30 || names < 40 {
		t.Errorf("%s: only %d file references and %d names checked; the pattern no longer matches the doc?", architectureDoc, files, names)
	}
}

// TestArchitectureDocCheck shows the check catches what it is for.
func TestArchitectureDocCheck(t *testing.T) {
	good := "`room/push.go Room.Push` `room/room.go Saver.AckMany` `room/write.go pushQueue` `center/push.go groupByRoom` `pkg/rpc/server_conn.go task.run` `room/room.go`"
	if _, _, p := checkGoRefs(".", good); len(p) != 0 {
		t.Errorf("good references refused: %q", p)
	}
	for _, bad := range []string{
		"`room/push.go Room.PushAll`",        // no such method
		"`room/push.go Push`",                // a method named as a function
		"`room/push.go Room.enqueue`",        // declared, but in another file
		"`room/pushes.go Room.Push`",         // no such file
		"`room/push.go Room.Push.Deeper`",    // not the form
		"`room/push.go  Room.Push`",          // not the form
		"`room/room.go Saver.Save`",          // not a method of that interface
		"`center/push.go groupByRoom extra`", // not the form
	} {
		if _, _, p := checkGoRefs(".", bad); len(p) == 0 {
			t.Errorf("bad reference %s accepted", bad)
		}
	}
}

// checkGoRefs checks the references in doc against the Go files under root
// and returns how many file references and names it checked and what is
// wrong.
func checkGoRefs(root, doc string) (files, names int, problems []string) {
	decls := map[string]map[string]bool{} // file -> declared names, nil: unreadable
	for _, m := range backticked.FindAllStringSubmatch(doc, -1) {
		span := m[1]
		ref := goRef.FindStringSubmatch(span)
		if ref == nil {
			if goFileStart.MatchString(span) {
				problems = append(problems, fmt.Sprintf("`%s`: not a reference of the form `path/file.go Name` or `path/file.go Type.Method`", span))
			}
			continue
		}
		path, name := ref[1], ref[2]
		files++
		d, seen := decls[path]
		if !seen {
			var err error
			d, err = declared(filepath.Join(root, filepath.FromSlash(path)))
			if err != nil {
				problems = append(problems, fmt.Sprintf("`%s`: %v", span, err))
			}
			decls[path] = d
		}
		if name == "" || d == nil {
			continue
		}
		names++
		if !d[name] {
			problems = append(problems, fmt.Sprintf("`%s`: %s declares no %s", span, path, name))
		}
	}
	return files, names, problems
}

// declared parses a Go file and returns the names it declares: functions
// and types as Name, methods as Type.Method (pointer or value receiver,
// type parameters dropped), and each interface type's methods as
// Interface.Method.
func declared(path string) (map[string]bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a file", path)
	}
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil || len(d.Recv.List) == 0 {
				out[d.Name.Name] = true
				continue
			}
			if recv := receiverType(d.Recv.List[0].Type); recv != "" {
				out[recv+"."+d.Name.Name] = true
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				ts, ok := spec.(*ast.TypeSpec)
				if !ok {
					continue
				}
				out[ts.Name.Name] = true
				it, ok := ts.Type.(*ast.InterfaceType)
				if !ok || it.Methods == nil {
					continue
				}
				for _, m := range it.Methods.List {
					if _, isFunc := m.Type.(*ast.FuncType); !isFunc {
						continue // an embedded interface or a type set
					}
					for _, n := range m.Names {
						out[ts.Name.Name+"."+n.Name] = true
					}
				}
			}
		}
	}
	return out, nil
}

// receiverType is the base type name of a method receiver: T for T, *T,
// T[P] and *T[P, Q].
func receiverType(e ast.Expr) string {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.ParenExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}
