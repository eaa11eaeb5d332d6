package main

// The PNG bar chart: standard library only, text in the 6×13 bitmap font of
// font.go.

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

var (
	colBG      = color.RGBA{255, 255, 255, 255}
	colText    = color.RGBA{30, 30, 30, 255}
	colGray    = color.RGBA{120, 120, 120, 255}
	colGrid    = color.RGBA{225, 225, 225, 255}
	colGoal    = color.RGBA{214, 39, 40, 255}
	colTargets = map[string]color.RGBA{
		targetBridge: {31, 119, 180, 255},
		targetPeer:   {255, 127, 14, 255},
	}
)

type canvas struct{ *image.RGBA }

func newCanvas(w, h int) canvas {
	c := canvas{image.NewRGBA(image.Rect(0, 0, w, h))}
	c.rect(0, 0, w, h, colBG)
	return c
}

func (c canvas) rect(x0, y0, x1, y1 int, col color.RGBA) {
	if x0 > x1 {
		x0, x1 = x1, x0
	}
	if y0 > y1 {
		y0, y1 = y1, y0
	}
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			c.SetRGBA(x, y, col)
		}
	}
}

func (c canvas) hline(x0, x1, y int, col color.RGBA, dash int) {
	for x := x0; x < x1; x++ {
		if dash == 0 || (x-x0)/dash%2 == 0 {
			c.SetRGBA(x, y, col)
		}
	}
}

func (c canvas) vline(x, y0, y1 int, col color.RGBA) {
	for y := y0; y < y1; y++ {
		c.SetRGBA(x, y, col)
	}
}

// text draws s with its top-left corner at (x, y); bold draws it twice.
func (c canvas) text(x, y int, s string, col color.RGBA, bold bool) {
	for i, r := range s {
		if r == '×' {
			r = 'x'
		}
		if r == '≤' || r == '≥' || r < ' ' || r > '~' {
			r = '?'
		}
		g := glyphs6x13[r-' ']
		for row := range 13 {
			for bit := range 6 {
				if g[row]&(1<<(5-bit)) != 0 {
					c.SetRGBA(x+i*7+bit, y+row, col)
					if bold {
						c.SetRGBA(x+i*7+bit+1, y+row, col)
					}
				}
			}
		}
	}
}

func textWidth(s string) int { return len([]rune(s)) * 7 }

func (c canvas) centered(x, y int, s string, col color.RGBA, bold bool) {
	c.text(x-textWidth(s)/2, y, s, col, bold)
}

// writeChart draws the ratio of each target to the IMAP ceiling per
// scenario (log scale, bars from 1 = the ceiling), with the goals,
// and the memory per idle session beside it.
func (r *report) writeChart(path string) error {
	type group struct {
		scenario     string
		higherBetter bool
		bars         []*series
		goal         float64 // ratio; 0: none
	}
	var groups []group
	var others []string
	for _, s := range r.sorted() {
		// CPU per session is a breakdown of the sessions row, for the table.
		if s.target != targetCeiling || len(s.values) == 0 || strings.HasPrefix(s.scenario, "sessions CPU") {
			continue
		}
		g := group{scenario: s.scenario, higherBetter: s.higherBetter}
		for _, name := range []string{targetBridge, targetPeer} {
			if t := r.find(s.scenario, name); t != nil {
				g.bars = append(g.bars, t)
				if !slices.Contains(others, name) {
					others = append(others, name)
				}
			}
		}
		if text, _ := r.verdict(r.find(s.scenario, targetBridge)); text != "" {
			fmt.Sscanf(strings.TrimLeft(text, "≤≥ "), "%g", &g.goal)
		}
		groups = append(groups, g)
	}
	idle := []*series{}
	for _, name := range []string{targetBridge, targetPeer} {
		if s := r.find("idle", name); s != nil && len(s.values) > 0 {
			idle = append(idle, s)
			if !slices.Contains(others, name) {
				others = append(others, name)
			}
		}
	}

	const (
		W, H             = 1100, 560
		top, bottom      = 70, 470
		left             = 80
		idleW            = 200
		barW, barGap, gp = 26, 6, 36
	)
	c := newCanvas(W, H)
	c.text(left, 14, fmt.Sprintf("popbridge and Dovecot POP3-over-imapc, relative to the IMAP ceiling (= 1), median of %d runs", r.opts.runs), colText, true)
	c.text(left, 34, fmt.Sprintf("%s, %d cores; %s", r.machine.cpu, r.machine.cores, r.machine.date), colGray, false)

	// Ratio panel.
	right := W - idleW - 60
	lo, hi := 0.5, 2.0
	for _, g := range groups {
		for _, s := range g.bars {
			q := r.ratio(s)
			if !math.IsNaN(q) && q > 0 {
				lo, hi = math.Min(lo, q), math.Max(hi, q)
			}
		}
	}
	lo = math.Pow(2, math.Floor(math.Log2(lo/1.15))) // room for the value below the lowest bar
	hi = math.Pow(2, math.Ceil(math.Log2(hi*1.15)))
	y := func(q float64) int {
		f := (math.Log2(q) - math.Log2(lo)) / (math.Log2(hi) - math.Log2(lo))
		return bottom - int(f*float64(bottom-top))
	}
	for q := lo; q <= hi*1.0001; q *= 2 {
		yy := y(q)
		c.hline(left, right, yy, colGrid, 0)
		label := fmt.Sprintf("%gx", q)
		c.text(left-8-textWidth(label), yy-6, label, colGray, false)
	}
	c.vline(left, top, bottom+1, colGray)
	groupW := 0
	if len(groups) > 0 {
		groupW = (right - left) / len(groups)
	}
	for i, g := range groups {
		cx := left + groupW*i + groupW/2
		n := len(g.bars)
		x0 := cx - (n*barW+(n-1)*barGap)/2
		for j, s := range g.bars {
			q := r.ratio(s)
			if math.IsNaN(q) || q <= 0 {
				continue
			}
			bx := x0 + j*(barW+barGap)
			c.rect(bx, y(1), bx+barW, y(q), colTargets[s.target])
			label := fmt.Sprintf("%.2f", q)
			ly := y(q) - 16
			if q < 1 {
				ly = y(q) + 4
			}
			c.centered(bx+barW/2, ly, label, colText, false)
		}
		if g.goal > 0 {
			gy := y(g.goal)
			c.hline(cx-groupW/2+gp/2, cx+groupW/2-gp/2, gy, colGoal, 4)
			c.hline(cx-groupW/2+gp/2, cx+groupW/2-gp/2, gy+1, colGoal, 4)
		}
		c.centered(cx, bottom+10, g.scenario, colText, true)
		better := "lower is better"
		if g.higherBetter {
			better = "higher is better"
		}
		if textWidth(better) > groupW-4 {
			// Seven groups or more: the short form, so that neighbours' do
			// not run into each other.
			better = strings.Replace(better, " is ", " ", 1)
		}
		c.centered(cx, bottom+26, better, colGray, false)
	}
	c.hline(left, right, y(1), colText, 0)
	c.hline(left, right, y(1)+1, colText, 0)

	// Idle panel: KiB per session, linear, with the goal (idleGoalKiB).
	ix0, ix1 := W-idleW-10, W-20
	c.text(ix0, top-18, "idle: KiB per session", colText, true)
	maxKiB := 80.0
	for _, s := range idle {
		maxKiB = math.Max(maxKiB, s.median()*1.15)
	}
	iy := func(v float64) int { return bottom - int(v/maxKiB*float64(bottom-top)) }
	step := 16.0
	for maxKiB/step > 8 {
		step *= 2
	}
	for v := 0.0; v <= maxKiB; v += step {
		c.hline(ix0, ix1, iy(v), colGrid, 0)
		label := fmt.Sprintf("%g", v)
		c.text(ix0-6-textWidth(label), iy(v)-6, label, colGray, false)
	}
	c.vline(ix0, top, bottom+1, colGray)
	for j, s := range idle {
		bx := ix0 + 30 + j*(barW+barGap+20)
		v := s.median()
		c.rect(bx, iy(0), bx+barW+10, iy(math.Max(v, 0)), colTargets[s.target])
		c.centered(bx+(barW+10)/2, iy(math.Max(v, 0))-16, fmtValue(v), colText, false)
	}
	if len(idle) > 0 {
		label := fmt.Sprintf("goal %g", idleGoalKiB)
		c.hline(ix0, ix1, iy(idleGoalKiB), colGoal, 4)
		c.hline(ix0, ix1, iy(idleGoalKiB)+1, colGoal, 4)
		c.text(ix1-textWidth(label), iy(idleGoalKiB)+3, label, colGoal, false)
	}
	c.hline(ix0, ix1, bottom, colGray, 0)
	c.centered((ix0+ix1)/2, bottom+10, "PSS growth / session", colText, false)
	c.centered((ix0+ix1)/2, bottom+26, "lower is better", colGray, false)

	// Legend.
	lx := left
	c.hline(lx, lx+24, H-27, colText, 0)
	c.hline(lx, lx+24, H-26, colText, 0)
	c.text(lx+30, H-34, "IMAP ceiling (= 1)", colText, false)
	lx += 60 + textWidth("IMAP ceiling (= 1)")
	for _, name := range others {
		c.rect(lx, H-34, lx+14, H-20, colTargets[name])
		c.text(lx+20, H-34, name, colText, false)
		lx += 40 + textWidth(name)
	}
	c.hline(lx, lx+30, H-27, colGoal, 4)
	c.text(lx+36, H-34, "the issue's goal for popbridge", colText, false)

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, c.RGBA); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
