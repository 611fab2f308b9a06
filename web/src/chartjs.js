// Chart.js with only the parts the audience chart uses (tree-shaken): a line for the size, bars
// for entries and exits, on a category axis of hours.
import {
  Chart, BarController, BarElement, CategoryScale, Legend, LineController, LineElement, LinearScale, PointElement,
  Tooltip,
} from "chart.js";

Chart.register(BarController, BarElement, CategoryScale, Legend, LineController, LineElement, LinearScale,
               PointElement, Tooltip);

export { Chart };
