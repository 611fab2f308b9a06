// The Data flow view (filled in below once GET /v1/dataflow is in).
import { views } from "./api.js";

export function setup() {
  views.dataflow = {};
}
