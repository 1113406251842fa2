/** Entry point: the model, the test snapshot, the view. */
import { render } from 'preact';
import { App } from './app/App';
import { installDebug } from './app/debug';
import { AppModel } from './app/model';
import './styles.css';

const app = new AppModel();
installDebug(app);
app.start();
render(<App app={app} />, document.getElementById('app')!);
