#!/bin/sh
# Builds the Plotly.js bundle the dashboard serves, frontend/vendor/plotly-scatter-heatmap.min.js:
# plotly.js 4.1.1's core and its heatmap trace (entry.js), minified by esbuild as plotly.js's
# own build does (iife, global Plotly, target es2016). The dashboard draws only scatter and
# heatmap traces; in this bundle Chromium parses and runs Plotly.js in about a third of the
# time the official `cartesian` bundle takes (docs/benchmarks.md). Needs node and npm; the
# versions are pinned in package-lock.json.
set -eu
cd "$(dirname "$0")"
npm ci --ignore-scripts --no-audit --no-fund
# plotly.js's registry requires MapLibre's CSS for map traces: none here (empty loader).
node_modules/.bin/esbuild entry.js --bundle --format=iife --global-name=Plotly --minify \
  --target=es2016 --define:global=window --define:define.amd=false --loader:.css=empty \
  --legal-comments=eof --log-level=warning \
  --banner:js="/**
* plotly.js (scatter + heatmap - minified) v4.1.1, built by scripts/plotly_bundle/build.sh
* Copyright 2012-2026, Plotly, Inc.
* All rights reserved.
* Licensed under the MIT license
*/" \
  --outfile=../../frontend/vendor/plotly-scatter-heatmap.min.js
