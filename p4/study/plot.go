package study

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"slices"
	"strings"
)

// WritePNG draws the study: x is the table size per backend (M/N, log
// scale), y the share of flows moved divided by the ideal 1/N (1 is
// minimal disruption). One line per backend count; solid for remove,
// dotted for add. Drawn with the standard library only.
func WritePNG(w io.Writer, rows []Row) error {
	const W, H = 900, 560
	const left, right, top, bottom = 80, 170, 50, 70
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	fill(img, img.Bounds(), color.RGBA{255, 255, 255, 255})

	if len(rows) == 0 {
		return png.Encode(w, img)
	}
	// Ranges.
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymax := 1.0
	for _, r := range rows {
		x := math.Log10(float64(r.TableSize) / float64(r.Backends))
		xmin, xmax = min(xmin, x), max(xmax, x)
		ymax = max(ymax, r.FlowsMoved/r.Ideal, r.SlotsMoved/r.Ideal)
	}
	xmin, xmax = math.Floor(xmin), math.Ceil(xmax)
	if xmax == xmin {
		xmax++
	}
	ymin := 1.0
	ystep := niceStep((ymax - ymin) / 6)
	ymax = ymin + math.Ceil((ymax-ymin)/ystep)*ystep
	if ymax <= ymin {
		ymax = ymin + ystep
	}
	px := func(x float64) int { return left + int((x-xmin)/(xmax-xmin)*float64(W-left-right)) }
	py := func(y float64) int { return H - bottom - int((y-ymin)/(ymax-ymin)*float64(H-top-bottom)) }

	grey := color.RGBA{220, 220, 220, 255}
	black := color.RGBA{0, 0, 0, 255}
	// Grid and ticks.
	for x := xmin; x <= xmax; x++ {
		for s := 1; s < 10; s++ {
			xx := x + math.Log10(float64(s))
			if xx > xmax {
				break
			}
			c := grey
			if s == 1 {
				c = color.RGBA{180, 180, 180, 255}
			}
			vline(img, px(xx), top, H-bottom, c)
		}
		label := fmt.Sprintf("%g", math.Pow(10, x))
		text(img, px(x)-len(label)*4, H-bottom+10, label, black, 2)
	}
	for y := ymin; y <= ymax+ystep/2; y += ystep {
		hline(img, left, W-right, py(y), grey)
		label := trimFloat(y)
		text(img, left-10-len(label)*8, py(y)-5, label, black, 2)
	}
	hline(img, left, W-right, py(1), color.RGBA{120, 120, 120, 255})
	vline(img, left, top, H-bottom, black)
	hline(img, left, W-right, H-bottom, black)
	text(img, left, 12, "FLOWS MOVED / IDEAL 1/N WHEN ONE BACKEND LEAVES (SOLID) OR JOINS (DOTTED)", black, 2)
	text(img, left+(W-left-right)/2-150, H-bottom+40, "TABLE SIZE / BACKENDS (M/N)", black, 2)

	// Lines, one colour per backend count.
	palette := []color.RGBA{{31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255}, {148, 103, 189, 255}, {255, 127, 14, 255}, {140, 86, 75, 255}, {23, 190, 207, 255}}
	var ns []int
	for _, r := range rows {
		if !slices.Contains(ns, r.Backends) {
			ns = append(ns, r.Backends)
		}
	}
	for i, n := range ns {
		c := palette[i%len(palette)]
		for _, op := range []string{"remove", "add"} {
			var pts []image.Point
			for _, r := range rows {
				if r.Backends == n && r.Op == op {
					pts = append(pts, image.Pt(px(math.Log10(float64(r.TableSize)/float64(n))), py(r.FlowsMoved/r.Ideal)))
				}
			}
			for j := range pts {
				dot(img, pts[j], 3, c)
				if j > 0 {
					line(img, pts[j-1], pts[j], c, op == "add")
				}
			}
		}
		ly := top + 10 + i*24
		fill(img, image.Rect(W-right+20, ly, W-right+44, ly+4), c)
		text(img, W-right+52, ly-4, fmt.Sprintf("N=%d", n), black, 2)
	}
	return png.Encode(w, img)
}

func trimFloat(y float64) string {
	s := fmt.Sprintf("%.2f", y)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 0.1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	fill(img, image.Rect(x0, y, x1+1, y+1), c)
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	fill(img, image.Rect(x, y0, x+1, y1+1), c)
}

func dot(img *image.RGBA, p image.Point, r int, c color.RGBA) {
	fill(img, image.Rect(p.X-r, p.Y-r, p.X+r+1, p.Y+r+1), c)
}

// line draws a 2-pixel line (Bresenham), dotted when asked.
func line(img *image.RGBA, a, b image.Point, c color.RGBA, dotted bool) {
	dx, dy := abs(b.X-a.X), -abs(b.Y-a.Y)
	sx, sy := sign(b.X-a.X), sign(b.Y-a.Y)
	err := dx + dy
	x, y := a.X, a.Y
	for i := 0; ; i++ {
		if !dotted || (i/4)%2 == 0 {
			fill(img, image.Rect(x, y, x+2, y+2), c)
		}
		if x == b.X && y == b.Y {
			return
		}
		e2 := 2 * err
		if e2 >= dy {
			err += dy
			x += sx
		}
		if e2 <= dx {
			err += dx
			y += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// text draws s in a 3x5 pixel font scaled by scale. Unknown characters
// are left blank.
func text(img *image.RGBA, x, y int, s string, c color.RGBA, scale int) {
	for _, r := range strings.ToUpper(s) {
		g := glyphs[r]
		for row := 0; row < 5; row++ {
			for col := 0; col < 3; col++ {
				if g[row]&(4>>col) != 0 {
					fill(img, image.Rect(x+col*scale, y+row*scale, x+(col+1)*scale, y+(row+1)*scale), c)
				}
			}
		}
		x += 4 * scale
	}
}

// glyphs: 5 rows of 3 bits, most significant bit leftmost.
var glyphs = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7},
	'4': {5, 5, 7, 1, 1}, '5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 2, 2},
	'8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7}, '.': {0, 0, 0, 0, 2}, '/': {1, 1, 2, 4, 4},
	'=': {0, 7, 0, 7, 0}, '-': {0, 0, 7, 0, 0}, '(': {1, 2, 2, 2, 1}, ')': {4, 2, 2, 2, 4},
	'%': {5, 1, 2, 4, 5}, 'E': {7, 4, 6, 4, 7}, '+': {0, 2, 7, 2, 0},
	'A': {2, 5, 7, 5, 5}, 'B': {6, 5, 6, 5, 6}, 'C': {7, 4, 4, 4, 7}, 'D': {6, 5, 5, 5, 6},
	'F': {7, 4, 6, 4, 4}, 'G': {7, 4, 5, 5, 7}, 'H': {5, 5, 7, 5, 5}, 'I': {7, 2, 2, 2, 7},
	'J': {1, 1, 1, 5, 7}, 'K': {5, 5, 6, 5, 5}, 'L': {4, 4, 4, 4, 7}, 'M': {5, 7, 7, 5, 5},
	'N': {6, 5, 5, 5, 5}, 'O': {7, 5, 5, 5, 7}, 'P': {7, 5, 7, 4, 4}, 'Q': {7, 5, 5, 7, 1},
	'R': {6, 5, 6, 5, 5}, 'S': {7, 4, 7, 1, 7}, 'T': {7, 2, 2, 2, 2}, 'U': {5, 5, 5, 5, 7},
	'V': {5, 5, 5, 5, 2}, 'W': {5, 5, 7, 7, 5}, 'X': {5, 5, 2, 5, 5}, 'Y': {5, 5, 2, 2, 2},
	'Z': {7, 1, 2, 4, 7},
}
