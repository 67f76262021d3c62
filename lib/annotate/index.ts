/** Human preference labelling: the database, the web server, and the export with ChatGLM-RLHF's filters. */
export { LabelDb, ANSWERS, type Answer, type Assignment, type Candidate, type LabelRow, type Progress } from './db.js';
export { loadCandidates } from './candidates.js';
export { startAnnotateServer, type AnnotateServerOptions } from './server.js';
export {
  exportPreferences,
  stronglyConnected,
  type AgreementReport,
  type ExportOptions,
  type ExportResult,
} from './export.js';
export { cohensKappa, fleissKappa, pairwiseAgreement } from './agreement.js';
