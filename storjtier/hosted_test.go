package storjtier_test

import (
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeregistry/edge/storjtier"
)

func TestLinksAndReferrers(t *testing.T) {
	t.Parallel()
	b, err := storjtier.NewDir(storjtier.DirConfig{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tier := storjtier.New(b)
	ctx := t.Context()
	d, subject, other := digest.FromString("a"), digest.FromString("s"), digest.FromString("o")

	if ok, err := tier.HasLink(ctx, "team", "team/app", d); err != nil || ok {
		t.Fatalf("HasLink before = %v, %v", ok, err)
	}
	if err := tier.PutLink(ctx, "team", "team/app", d); err != nil {
		t.Fatal(err)
	}
	if ok, _ := tier.HasLink(ctx, "team", "team/app", d); !ok {
		t.Fatal("link not found")
	}
	if ok, _ := tier.HasLink(ctx, "team", "team/app/sub", d); ok {
		t.Fatal("a link leaks into a nested repository")
	}
	if err := tier.PutLink(ctx, "team", "team/other", d); err != nil {
		t.Fatal(err)
	}
	if holders, err := tier.Holders(ctx, "team", d); err != nil || len(holders) != 2 {
		t.Fatalf("Holders = %v, %v", holders, err)
	}
	if err := tier.DeleteLink(ctx, "team", "team/other", d); err != nil {
		t.Fatal(err)
	}
	if holders, _ := tier.Holders(ctx, "team", d); len(holders) != 1 || holders[0] != "team/app" {
		t.Fatalf("Holders after a delete = %v", holders)
	}
	if err := tier.DeleteLink(ctx, "team", "team/app", d); err != nil {
		t.Fatal(err)
	}
	if ok, _ := tier.HasLink(ctx, "team", "team/app", d); ok {
		t.Fatal("link survived its delete")
	}

	for _, ref := range []digest.Digest{d, other} {
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: ref, Size: 10, ArtifactType: "application/x-test"}
		if err := tier.PutReferrer(ctx, "team", "team/app", subject, desc); err != nil {
			t.Fatal(err)
		}
	}
	refs, err := tier.ListReferrers(ctx, "team", "team/app", subject)
	if err != nil || len(refs) != 2 {
		t.Fatalf("ListReferrers = %v, %v", refs, err)
	}
	if err := tier.DeleteReferrer(ctx, "team", "team/app", subject, d); err != nil {
		t.Fatal(err)
	}
	refs, _ = tier.ListReferrers(ctx, "team", "team/app", subject)
	if len(refs) != 1 || refs[0].Digest != other || refs[0].ArtifactType != "application/x-test" {
		t.Fatalf("after delete: %v", refs)
	}
	if refs, _ := tier.ListReferrers(ctx, "team", "team/other", subject); len(refs) != 0 {
		t.Fatalf("referrers of another repository: %v", refs)
	}
	if _, err := tier.HasLink(ctx, "team", "Bad Name", d); err == nil {
		t.Fatal("a bad repository name was accepted")
	}
}
