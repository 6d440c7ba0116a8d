package imagebuilder_test

import (
	"context"
	"testing"

	"github.com/kubeopencode/kubeopencode/tools/images"
)

// BenchmarkImageBuild builds each real image for both platforms and reports
// its compressed size per platform (the bytes a node pulls: every layer
// plus the configuration) next to the time a build takes with a warm Go
// build cache. docs/images.md quotes the figures:
//
//	go test ./tools/imagebuilder -run '^$' -bench BenchmarkImageBuild -benchtime 1x
func BenchmarkImageBuild(b *testing.B) {
	for _, img := range images.All {
		b.Run(img.Name, func(b *testing.B) {
			builder := newBuilder(b)
			var built = map[string]int64{}
			for b.Loop() {
				out, err := builder.Build(context.Background(), img)
				if err != nil {
					b.Fatal(err)
				}
				im, err := out.Index.IndexManifest()
				if err != nil {
					b.Fatal(err)
				}
				for _, m := range im.Manifests {
					one, err := out.Index.Image(m.Digest)
					if err != nil {
						b.Fatal(err)
					}
					mf, err := one.Manifest()
					if err != nil {
						b.Fatal(err)
					}
					size := mf.Config.Size
					for i, l := range mf.Layers {
						size += l.Size
						if i == 0 {
							built["base"] = l.Size
						}
					}
					built[m.Platform.Architecture] = size
				}
			}
			b.ReportMetric(float64(built["amd64"])/1e6, "MB-amd64")
			b.ReportMetric(float64(built["arm64"])/1e6, "MB-arm64")
			b.ReportMetric(float64(built["base"])/1e6, "MB-base-layer")
		})
	}
}
