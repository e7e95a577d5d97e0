package main

import (
	"context"
	"io"

	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/node"
)

// serve runs the node cfg describes until ctx ends, logging to logOut.
func serve(ctx context.Context, cfg *config.Config, logOut io.Writer) error {
	n, err := node.New(ctx, cfg, node.WithLogger(node.NewLogger(cfg.Log, logOut)))
	if err != nil {
		return err
	}
	return n.Run(ctx)
}
