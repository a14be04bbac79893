// Command etcd is etcd's own server main, built here from a pinned module
// because etcd's go.mod has replace lines that `go install pkg@version` refuses.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
