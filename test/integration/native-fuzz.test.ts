// The connection handler under arbitrary input on the native accept path (test/helpers/fuzz-server.ts): needs the
// addon, built with a C compiler. `npm run fuzz` runs it with test/server/fuzz.test.ts.
import { describeServerFuzz } from '../helpers/fuzz-server.js';

describeServerFuzz('native');
