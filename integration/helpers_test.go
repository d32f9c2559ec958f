package integration

import (
	"context"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
)

func namespaced(ctx context.Context, ns string) context.Context {
	return namespaces.WithNamespace(ctx, ns)
}

func timeNow() time.Time { return time.Now() }
