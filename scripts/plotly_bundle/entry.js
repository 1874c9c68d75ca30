// The Plotly.js the dashboard serves: plotly.js's core (scatter, cartesian and date axes,
// legend, hover, shapes, modebar, image export) and the heatmap trace, nothing else.
// build.sh bundles it into frontend/vendor/plotly-scatter-heatmap.min.js.
var Plotly = require("plotly.js/lib/core");

Plotly.register([require("plotly.js/lib/heatmap")]);

module.exports = Plotly;
