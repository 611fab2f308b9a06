// The Activation view (filled in below once the activation API is in).
import { views } from "./api.js";

export function setup() {
  views.activation = {};
}
