//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/internal/testctrd"
	"github.com/imgprune/imgprune/internal/testimage"
)

// sessionImages are the images of the harness session: named ones, two
// with labels, and unnamed ones (one labelled, one a container uses).
type sessionImages struct {
	app, old, other, keep, drop testimage.Image
	scratch, bare, used         testimage.Image
}

func newSessionImages() sessionImages {
	named := func(seed string, labels map[string]string) testimage.Image {
		return runnable("session/"+seed, testimage.WithNames("docker.io/e2e/"+seed+":1"), testimage.WithLabels(labels))
	}
	unnamed := func(seed string, labels map[string]string) testimage.Image {
		return runnable("session/"+seed, testimage.WithLabels(labels))
	}
	return sessionImages{
		app: named("app", nil), old: named("old", nil), other: named("other", nil),
		keep: named("keep", map[string]string{"keep": "yes"}), drop: named("drop", map[string]string{"keep": "no"}),
		scratch: unnamed("scratch", map[string]string{"tier": "scratch"}), bare: unnamed("bare", nil), used: unnamed("used", nil),
	}
}

// harnessSession is one long docker CLI session as a test harness runs it
// on a server: load, tag, containers by every form of reference, a moved
// tag, rmi, prunes with filters, bad filters, rm of every container, a
// last prune. It returns the transcript.
func harnessSession(t *testing.T, sock string, imgs sessionImages) []string {
	dir := t.TempDir()
	archive := filepath.Join(dir, "session.tar")
	assert.NilError(t, writeArchive(archive, imgs.app, imgs.old, imgs.scratch, imgs.other, imgs.keep, imgs.bare, imgs.drop, imgs.used))
	// What an earlier test left is not the session's.
	c := newCLI(t, sock)
	if ids := strings.Fields(c.ok("ps", "-aq")); len(ids) > 0 {
		c.ok(append([]string{"rm", "-f"}, ids...)...)
	}
	c.ok("image", "prune", "-a", "-f")
	r := &recorder{cli: c, dir: dir}
	step := func(args ...string) { r.step("", args...) }
	id := func(img testimage.Image) string { return img.Target.Digest.String() }
	hex := func(img testimage.Image) string { return img.Target.Digest.Encoded() }
	ps := []string{"ps", "-a", "--format", "{{.Names}} {{.Image}} {{.Command}} {{.Status}}"}
	list := []string{"images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}"}

	step("load", "-i", archive)
	step("images")
	step(list...)
	step("tag", "e2e/app:1", "e2e/alias:1")
	for _, c := range [][2]string{
		{"name1", "e2e/app:1"}, {"name2", "e2e/other:1"},
		{"alias1", "e2e/alias:1"}, {"alias2", "e2e/alias:1"},
		{"full1", id(imgs.app)}, {"full2", id(imgs.other)},
		{"hex64a", hex(imgs.app)}, {"hex64b", hex(imgs.old)},
		{"hex12a", hex(imgs.app)[:12]}, {"hex12b", hex(imgs.other)[:12]},
		{"digest1", "e2e/app@" + id(imgs.app)}, {"digest2", "e2e/old@" + id(imgs.old)},
		{"dangling1", hex(imgs.used)[:12]}, {"dangling2", id(imgs.used)},
	} {
		step("create", "--name", c[0], c[1])
	}
	step("create", "--name", "name1", "e2e/app:1")
	step(ps...)
	step("inspect", "--format", "{{.Name}} {{.Config.Image}} {{.Image}} {{.State.Status}}", "digest1", "dangling1", "hex12b")
	// A tag moves on while a container made by it stays.
	step("tag", "e2e/other:1", "e2e/moved:1")
	step("create", "--name", "moved1", "e2e/moved:1")
	step("tag", "e2e/app:1", "e2e/moved:1")
	step(ps...)
	// rmi: refused, forced, untag only, whole, unknown.
	step("create", "--name", "old1", "e2e/old:1")
	step("rmi", "e2e/old:1")
	step("rmi", "-f", "e2e/old:1")
	step("rmi", "e2e/alias:1")
	step("rmi", "e2e/keep:1", "e2e/nothing:1")
	step("rmi", hex(imgs.app)[:12])
	step("tag", "e2e/drop:1", "e2e/drop:2")
	step("rmi", hex(imgs.drop)[:12])
	step("images", "--filter", "dangling=true", "--format", "{{.ID}}")
	step("image", "prune", "-a", "-f", "--filter", "until=1h")
	step(ps...)
	step(list...)
	// Prunes of dangling images, then bad filters, which change nothing.
	step("image", "prune", "-f", "--filter", "label=tier=scratch")
	step(list...)
	step("image", "prune", "-f", "--filter", "until=notatime")
	step("image", "prune", "-f", "--filter", "nosuchfilter=1")
	step("images", "--filter", "until=notatime")
	step("images", "--filter", "dangling=potato")
	step("image", "prune", "-f")
	step("image", "prune", "-f", "--filter", "dangling=potato")
	step(list...)
	// Prunes of all unused images, by label; containers keep theirs.
	step("image", "prune", "-a", "-f", "--filter", "label=keep=no")
	step("image", "prune", "-a", "-f", "--filter", "label!=keep=yes")
	step(list...)
	// e2e/other:1 is left to moved1, made by the tag that moved on.
	step("rm", "name2", "full2", "hex12b")
	step(ps...)
	step("image", "prune", "-a", "-f", "--filter", "label!=keep=yes")
	step(list...)
	step("rm", "name1", "alias1", "alias2", "full1", "hex64a", "hex64b", "hex12a", "digest1", "digest2", "dangling1", "dangling2", "old1", "moved1")
	step("rm", "name1")
	step(ps...)
	step("image", "prune", "-f")
	step(list...)
	step("image", "prune", "-a", "-f")
	step("images", "-q")
	return r.transcript
}

// TestHarnessSessionLikeTheEngine: a harness's whole docker CLI session
// prints on `imgprune serve` what it prints on the Engine, line by line,
// but for the README's deliberate differences, each allowed where it shows
// and nowhere else.
func TestHarnessSessionLikeTheEngine(t *testing.T) {
	imgs := newSessionImages()
	engine := harnessSession(t, engineSock, imgs)
	standalone := harnessSession(t, standaloneSock, imgs)
	t.Logf("the engine's transcript:\n%s", strings.Join(engine, "\n"))

	listed, err := readmeDifferences()
	assert.NilError(t, err)
	allowed := deliberate(imgs)
	var keys []string
	for _, d := range allowed {
		keys = append(keys, d.readme)
	}
	assert.Check(t, is.DeepEqual(keys, listed), "the test allows exactly the README's deliberate differences")

	e, s := steps(engine), steps(standalone)
	assert.Assert(t, is.Equal(len(e), len(s)))
	for i := range e {
		assert.Assert(t, is.Equal(e[i].command, s[i].command))
		if slices.Equal(e[i].lines, s[i].lines) {
			continue
		}
		as := ""
		for _, d := range allowed {
			if d.allows(e[i], s[i]) {
				as = d.readme
				break
			}
		}
		if as != "" {
			t.Logf("%s: differs as the README's %q lists:\nengine:\n%s\nimgprune:\n%s", e[i].command, as, strings.Join(e[i].lines, "\n"), strings.Join(s[i].lines, "\n"))
			continue
		}
		t.Errorf("%s: differs:\nengine:\n%s\nimgprune:\n%s", e[i].command, strings.Join(e[i].lines, "\n"), strings.Join(s[i].lines, "\n"))
	}
}

// step is one command of a transcript, and the lines it printed after
// its exit code.
type step struct {
	command string
	lines   []string
}

var commandLine = regexp.MustCompile(`^\$ docker (.*) (\(exit [0-9]+\))$`)

func steps(transcript []string) []step {
	var out []step
	for _, l := range transcript {
		if m := commandLine.FindStringSubmatch(l); m != nil {
			out = append(out, step{command: m[1], lines: []string{m[2]}})
			continue
		}
		out[len(out)-1].lines = append(out[len(out)-1].lines, l)
	}
	return out
}

// difference is one of the README's deliberate differences: readme is its
// bullet's bold words, allows tells the steps where it shows.
type difference struct {
	readme string
	allows func(engine, imgprune step) bool
}

var reclaimed = regexp.MustCompile(`^(prune\| )?Total reclaimed space: `)

// without are the lines of a step but for those that match one of drop.
func without(s step, drop ...*regexp.Regexp) []string {
	return slices.DeleteFunc(slices.Clone(s.lines), func(l string) bool {
		return slices.ContainsFunc(drop, func(re *regexp.Regexp) bool { return re.MatchString(l) })
	})
}

// deliberate are the README's deliberate differences, in its order, as
// they show in the session on imgs.
func deliberate(imgs sessionImages) []difference {
	moved := regexp.MustCompile(regexp.QuoteMeta(imgs.other.Target.Digest.Encoded()[:12]))
	return []difference{
		{
			readme: "Reclaimed space.",
			allows: func(e, s step) bool {
				return slices.Equal(without(e, reclaimed), without(s, reclaimed))
			},
		},
		{
			readme: "A bad dangling value.",
			allows: func(e, s step) bool {
				return e.command == "image prune -f --filter dangling=potato" &&
					slices.Equal(s.lines, []string{"(exit 1)", "prune| ", "prune| stderr: Error response from daemon: invalid filter 'dangling=[potato true]'"})
			},
		},
		{
			// e2e/other:1's image, which moved1 was made from by the tag
			// that moved on: the Engine's prune deletes it, imgprune's
			// keeps it until moved1 goes, and the listings between show it.
			readme: "A moved tag.",
			allows: func(e, s step) bool {
				return (strings.HasPrefix(e.command, "image prune ") || strings.HasPrefix(e.command, "images ")) &&
					slices.Equal(without(e, reclaimed, moved), without(s, reclaimed, moved))
			},
		},
	}
}

// readmeDifferences are the bold words that start each bullet of the
// README's list of deliberate differences from a Docker Engine.
func readmeDifferences() ([]string, error) {
	repo, err := testctrd.RepoRoot()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		return nil, err
	}
	_, section, ok := strings.Cut(string(data), "\n#### Deliberate differences from a Docker Engine\n")
	if !ok {
		return nil, os.ErrNotExist
	}
	section, _, _ = strings.Cut(section, "\n#")
	var keys []string
	for _, m := range regexp.MustCompile(`(?m)^- \*\*([^*]+)\*\*`).FindAllStringSubmatch(section, -1) {
		keys = append(keys, m[1])
	}
	return keys, nil
}
