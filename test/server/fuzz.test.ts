// The connection handler under arbitrary input on the JavaScript accept path (test/helpers/fuzz-server.ts); the
// native path's run is test/integration/native-fuzz.test.ts.
import { describeServerFuzz } from '../helpers/fuzz-server.js';

describeServerFuzz('js');
