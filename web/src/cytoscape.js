// Cytoscape.js: the data-flow graph (datasets → segments → activations → destinations).
export { default as cytoscape } from "cytoscape";
